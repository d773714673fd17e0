"""Vehicle type classification of the detection crop (a Hugging Face image classifier, ViT-B/16 by default)."""

from __future__ import annotations

from workers.models.hf_family import CropClassifierFamily


class VehicleModel(CropClassifierFamily):
    """Label, confidence and top-3 vehicle types for the detected vehicle's box (the checkpoint's own classes)."""
