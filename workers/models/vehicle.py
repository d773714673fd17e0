"""Vehicle type classification of the detection crop (a Hugging Face image classifier)."""

from __future__ import annotations

from pathlib import Path

from workers.models.base import ModelInput
from workers.models.hf_classifier import ImageClassifier, write_tiny_classifier

TOP_K = 3

# The seed's vehicle-segment classes (MIO-TCD style); the real checkpoint's config.id2label is what
# inference reports, this list only names the classes of generated (tiny / full-size random) models.
VEHICLE_SEGMENT_CLASSES: tuple[str, ...] = (
    "articulated_truck", "background", "bicycle", "bus", "car", "motorcycle", "non_motorized_vehicle",
    "pedestrian", "pickup_truck", "single_unit_truck", "work_van",
)
ARCHITECTURE = "vit"  # the default checkpoint is a ViT-B/16 fine-tune


class VehicleModel:
    """Label, confidence and top-3 vehicle types for the detected vehicle's box."""

    def __init__(self, path: str, device: str) -> None:
        self.path = path
        self.device = device
        self.classifier: ImageClassifier | None = None

    def load(self) -> None:
        self.classifier = ImageClassifier.load(self.path, self.device)

    def unload(self) -> None:
        if self.classifier is not None:
            self.classifier.close()
        self.classifier = None

    def infer(self, inputs: ModelInput) -> dict:
        if self.classifier is None:
            raise RuntimeError("VehicleModel.infer called before load()")
        return self.classifier.classify(inputs.person_crop(), top_k=TOP_K)


def write_tiny(dest: Path, full_size: bool = False) -> None:
    """A random-weight classifier over the vehicle-segment classes, as a Hugging Face directory."""
    write_tiny_classifier(dest, list(VEHICLE_SEGMENT_CLASSES), full_size=full_size, architecture=ARCHITECTURE)
