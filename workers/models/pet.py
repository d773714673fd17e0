"""Pet classification (cat or dog) of the detection crop (a Hugging Face image classifier, ResNet-18 by default)."""

from __future__ import annotations

from workers.models.hf_family import CropClassifierFamily


class PetModel(CropClassifierFamily):
    """Label, confidence and ranked classes for the detected animal's box (the checkpoint's own classes)."""
