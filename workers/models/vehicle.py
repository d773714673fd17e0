"""Vehicle type classification of the detection crop (a Hugging Face image classifier, ViT-B/16 by default)."""

from __future__ import annotations

from prompt_formatting.vocabulary import NOT_VEHICLE_LABELS
from workers.models.hf_family import CropClassifierFamily, type_namer


class VehicleModel(CropClassifierFamily):
    """Label, confidence and top-3 vehicle types for the detected vehicle's box (the checkpoint's own classes)."""


# The registry's finisher: vehicle_type beside the checkpoint's own label.
name_vehicle_type = type_namer("vehicle", "vehicle_type", NOT_VEHICLE_LABELS)
