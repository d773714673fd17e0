"""Random-weight open_clip model for the clothing family, in the Hugging Face repo layout its loader reads."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from workers.generated.clip import CLIP_MEAN, CLIP_STD
from workers.models.open_clip_family import CLIP_BPE_VOCAB_SIZE, CONFIG_NAME

WEIGHTS_NAME = "open_clip_pytorch_model.bin"
OPENAI_PREPROCESS = {"mean": CLIP_MEAN, "std": CLIP_STD}  # as Marqo/marqo-fashionCLIP ships it
# A few-layer ViT and text tower: same code path as ViT-B-16, ~2 M parameters, mostly the token embedding.
TINY_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": CLIP_BPE_VOCAB_SIZE, "width": 32, "heads": 2, "layers": 2},
}
FULL_MODEL_NAME = "ViT-B-16"  # Marqo/marqo-fashionCLIP's architecture


def write_clothing(dest: Path, full_size: bool = False) -> None:
    """Write a randomly initialised open_clip model: its state dict and open_clip_config.json."""
    import open_clip
    import torch

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model_cfg = open_clip.get_model_config(FULL_MODEL_NAME) if full_size else TINY_MODEL_CFG
    torch.manual_seed(0)
    model = open_clip.CLIP(**copy.deepcopy(model_cfg))
    torch.save(model.state_dict(), dest / WEIGHTS_NAME)
    (dest / CONFIG_NAME).write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": OPENAI_PREPROCESS}, indent=2), encoding="utf-8"
    )
