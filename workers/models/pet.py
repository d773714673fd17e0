"""Pet classification (cat or dog) of the detection crop (a Hugging Face image classifier)."""

from __future__ import annotations

from pathlib import Path

from workers.models.hf_classifier import CropClassifierModel, write_tiny_classifier

# Classes of generated (tiny / full-size random) models; inference reports the checkpoint's own id2label.
PET_CLASSES: tuple[str, ...] = ("cat", "dog")
ARCHITECTURE = "resnet"  # a ResNet-18 fine-tune, as in the seed (~200 MB budget)


class PetModel(CropClassifierModel):
    """Label, confidence and ranked classes for the detected animal's box."""


def write_tiny(dest: Path, full_size: bool = False) -> None:
    """A random-weight cat/dog classifier as a Hugging Face directory."""
    write_tiny_classifier(dest, list(PET_CLASSES), full_size=full_size, architecture=ARCHITECTURE)
