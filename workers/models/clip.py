"""CLIP ViT-L/14 scene embeddings: the full frame and the detection crop as unit vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from workers.models.base import ModelInput

# Embeddings keep 6 decimals: at 4, a 768-dim unit vector's components (~0.04) would lose ~0.1% each.
EMBEDDING_DECIMALS = 6

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def unit_vector(values: list[float], decimals: int = EMBEDDING_DECIMALS) -> list[float]:
    """Scale a vector to length 1 (a zero vector stays zero), rounded for JSON."""
    norm = sum(v * v for v in values) ** 0.5
    if norm == 0.0:
        return [0.0 for _ in values]
    return [round(v / norm, decimals) for v in values]


class ClipModel:
    """Image tower of a transformers CLIP checkpoint; the text tower is never loaded."""

    def __init__(self, path: str, device: str) -> None:
        self.path = path
        self.device = device
        self.model: Any = None
        self.image_processor: Any = None

    def load(self) -> None:
        import torch
        from transformers import AutoConfig, AutoImageProcessor, CLIPVisionModelWithProjection

        dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        config = AutoConfig.from_pretrained(self.path)
        vision_config = getattr(config, "vision_config", config)
        # The projection width is a top-level CLIPConfig field; the vision tower must project to it too.
        vision_config.projection_dim = getattr(config, "projection_dim", vision_config.projection_dim)

        class ImageTower(CLIPVisionModelWithProjection):
            # The checkpoint is a whole CLIPModel; its text half is skipped on purpose, not reported.
            _keys_to_ignore_on_load_unexpected = [r"^text_model\.", r"^text_projection\.", r"^logit_scale$"]

        self.image_processor = AutoImageProcessor.from_pretrained(self.path)
        self.model = ImageTower.from_pretrained(self.path, config=vision_config, dtype=dtype)
        self.model.to(self.device).eval()

    def unload(self) -> None:
        self.model = None
        self.image_processor = None

    def embed(self, images: list[Image.Image]) -> list[list[float]]:
        """One L2-normalised embedding per image, computed in a single batch."""
        import torch

        if self.model is None:
            raise RuntimeError("ClipModel.embed called before load()")
        pixels = self.image_processor(images=[i.convert("RGB") for i in images], return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            embeds = self.model(pixel_values=pixels.to(self.device, self.model.dtype)).image_embeds
        return [unit_vector(row) for row in embeds.float().cpu().tolist()]

    def infer(self, inputs: ModelInput) -> dict:
        frame_embedding, crop_embedding = self.embed([inputs.frame, inputs.person_crop()])
        return {"frame_embedding": frame_embedding, "crop_embedding": crop_embedding, "dim": len(frame_embedding)}


# --- random-weight models in the on-disk format load() reads ---------------------------------------

# openai/clip-vit-large-patch14, for --full-size.
FULL_SIZE = {
    "image_size": 224,
    "vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
               "patch_size": 14},
    "text": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
             "vocab_size": 49408},
    "projection_dim": 768,
}
TINY = {
    "image_size": 32,
    "vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
               "patch_size": 8},
    "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
    "projection_dim": 16,
}


def build_clip_tokenizer() -> Any:
    """A CLIP byte-level BPE tokenizer built offline: each byte symbol, bare and word-final, no merges."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    tokens = [*symbols, *(s + "</w>" for s in symbols), "<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[])


def write_tiny(dest: Path, full_size: bool = False) -> None:
    """Write a random-weight CLIPModel directory with a processor (tokenizer + image processor)."""
    from transformers import CLIPConfig, CLIPImageProcessor
    from transformers import CLIPModel as HFCLIPModel
    from transformers import CLIPProcessor

    shape = FULL_SIZE if full_size else TINY
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = build_clip_tokenizer()
    side = shape["image_size"]
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side},
        image_mean=CLIP_MEAN, image_std=CLIP_STD,
    )
    text_config = {
        "vocab_size": len(tokenizer), "max_position_embeddings": 77, "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id, **shape["text"],
    }
    text_config["vocab_size"] = max(text_config["vocab_size"], len(tokenizer))
    config = CLIPConfig(
        text_config=text_config,
        vision_config={"image_size": side, **shape["vision"]},
        projection_dim=shape["projection_dim"],
    )
    HFCLIPModel(config).eval().save_pretrained(dest)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(dest)
