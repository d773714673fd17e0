"""Pet classification (cat or dog) of the detection crop (a Hugging Face image classifier)."""

from __future__ import annotations

from pathlib import Path

from workers.models.base import ModelInput
from workers.models.hf_classifier import ImageClassifier, write_tiny_classifier

TOP_K = 3

# Classes of generated (tiny / full-size random) models; inference reports the checkpoint's own id2label.
PET_CLASSES: tuple[str, ...] = ("cat", "dog")
ARCHITECTURE = "resnet"  # a ResNet-18 fine-tune, as in the seed (~200 MB budget)


class PetModel:
    """Label, confidence and ranked classes for the detected animal's box."""

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
            raise RuntimeError("PetModel.infer called before load()")
        return self.classifier.classify(inputs.person_crop(), top_k=TOP_K)


def write_tiny(dest: Path, full_size: bool = False) -> None:
    """A random-weight cat/dog classifier as a Hugging Face directory."""
    write_tiny_classifier(dest, list(PET_CLASSES), full_size=full_size, architecture=ARCHITECTURE)
