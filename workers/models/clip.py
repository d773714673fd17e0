"""CLIP ViT-L/14 scene embeddings: the full frame and the detection crop as unit vectors."""

from __future__ import annotations

from typing import Any

from PIL import Image

from workers.models.base import ModelInput
from workers.models.hf_family import HuggingFaceFamily

# Embeddings keep 6 decimals: at 4, a 768-dim unit vector's components (~0.04) would lose ~0.1% each.
EMBEDDING_DECIMALS = 6


def unit_vector(values: list[float], decimals: int = EMBEDDING_DECIMALS) -> list[float]:
    """Scale a vector to length 1 (a zero vector stays zero), rounded for JSON."""
    norm = sum(v * v for v in values) ** 0.5
    if norm == 0.0:
        return [0.0 for _ in values]
    return [round(v / norm, decimals) for v in values]


class ClipModel(HuggingFaceFamily):
    """Image tower of a transformers CLIP checkpoint; the text tower is never loaded."""

    processor_class = "AutoImageProcessor"
    half_on_cuda = True

    def load_model(self) -> Any:
        from transformers import AutoConfig, CLIPVisionModelWithProjection

        config = self.pretrained(AutoConfig)
        vision_config = getattr(config, "vision_config", config)
        # The projection width is a top-level CLIPConfig field; the vision tower must project to it too.
        vision_config.projection_dim = getattr(config, "projection_dim", vision_config.projection_dim)

        class ImageTower(CLIPVisionModelWithProjection):
            # The checkpoint is a whole CLIPModel; its text half is skipped on purpose, not reported.
            _keys_to_ignore_on_load_unexpected = [r"^text_model\.", r"^text_projection\.", r"^logit_scale$"]

        return self.pretrained(ImageTower, config=vision_config, dtype=self.dtype)

    def embed(self, images: list[Image.Image]) -> list[list[float]]:
        """One L2-normalised embedding per image, computed in a single batch."""
        embeds = self.forward_images(images).image_embeds
        return [unit_vector(row) for row in embeds.float().cpu().tolist()]

    def infer(self, inputs: ModelInput) -> dict:
        frame_embedding, crop_embedding = self.embed([inputs.frame, inputs.person_crop()])
        return {"frame_embedding": frame_embedding, "crop_embedding": crop_embedding, "dim": len(frame_embedding)}
