"""Pet classification (cat or dog) of the detection crop (a Hugging Face image classifier, ResNet-18 by default)."""

from __future__ import annotations

from prompt_formatting.vocabulary import NOT_ANIMAL_LABELS
from workers.models.hf_family import CropClassifierFamily, type_namer


class PetModel(CropClassifierFamily):
    """Label, confidence and ranked classes for the detected animal's box (the checkpoint's own classes)."""


# The registry's finisher: pet_type beside the checkpoint's own label.
name_pet_type = type_namer("pet", "pet_type", NOT_ANIMAL_LABELS)
