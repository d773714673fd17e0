"""Vehicle type classification of the detection crop (a Hugging Face image classifier)."""

from __future__ import annotations

from pathlib import Path

from workers.models.hf_classifier import CropClassifierModel, write_tiny_classifier

# The seed's vehicle-segment classes (MIO-TCD style); the real checkpoint's config.id2label is what
# inference reports, this list only names the classes of generated (tiny / full-size random) models.
VEHICLE_SEGMENT_CLASSES: tuple[str, ...] = (
    "articulated_truck", "background", "bicycle", "bus", "car", "motorcycle", "non_motorized_vehicle",
    "pedestrian", "pickup_truck", "single_unit_truck", "work_van",
)
ARCHITECTURE = "vit"  # the default checkpoint is a ViT-B/16 fine-tune


class VehicleModel(CropClassifierModel):
    """Label, confidence and top-3 vehicle types for the detected vehicle's box."""


def write_tiny(dest: Path, full_size: bool = False) -> None:
    """A random-weight classifier over the vehicle-segment classes, as a Hugging Face directory."""
    write_tiny_classifier(dest, list(VEHICLE_SEGMENT_CLASSES), full_size=full_size, architecture=ARCHITECTURE)
