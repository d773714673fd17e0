"""Random-weight X-CLIP (action recognition), tiny or xclip-base-patch16-zero-shot-sized, with its processor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.generated.clip import CLIP_MEAN, CLIP_STD
from workers.generated.tokenizers import build_word_clip_tokenizer
from workers.models.action import ACTIONS_FILE, load_actions

# The tiny model: small enough to build and run in well under a second on a CPU.
TINY_CONFIG: dict[str, Any] = {
    "text_config": {
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "max_position_embeddings": 77,
    },
    "vision_config": {
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "mit_hidden_size": 32, "mit_intermediate_size": 64, "mit_num_hidden_layers": 1, "mit_num_attention_heads": 2,
        "image_size": 32, "patch_size": 8, "num_frames": 4,
    },
    "projection_dim": 32, "prompt_layers": 1, "prompt_num_attention_heads": 2,
}
TINY_IMAGE_SIZE = 32

# microsoft/xclip-base-patch16-zero-shot: ViT-B/16 vision tower over 32 frames, CLIP text tower.
FULL_CONFIG: dict[str, Any] = {
    "text_config": {},
    "vision_config": {"patch_size": 16, "num_frames": 32},
    "projection_dim": 512,
}
FULL_IMAGE_SIZE = 224


def write_action(dest: Path, full_size: bool = False) -> None:
    """Write a randomly initialised X-CLIP with its processor (tokenizer + video preprocessor) into dest.

    full_size=True gives the real xclip-base-patch16-zero-shot architecture; both use a small
    offline-built tokenizer spelling the bundled actions (the real one ships CLIP's 49k-token vocabulary).
    """
    import torch
    from transformers import VideoMAEImageProcessor, XCLIPConfig, XCLIPModel, XCLIPProcessor

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = build_word_clip_tokenizer(list(load_actions(ACTIONS_FILE)))
    spec = FULL_CONFIG if full_size else TINY_CONFIG
    size = FULL_IMAGE_SIZE if full_size else TINY_IMAGE_SIZE
    text_config = {**spec["text_config"], "vocab_size": len(tokenizer)}
    config = XCLIPConfig(
        text_config=text_config, vision_config=dict(spec["vision_config"], image_size=size),
        **{k: v for k, v in spec.items() if k not in ("text_config", "vision_config")},
    )
    torch.manual_seed(0)
    XCLIPModel(config).save_pretrained(dest)
    image_processor = VideoMAEImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size},
        image_mean=CLIP_MEAN, image_std=CLIP_STD,
    )
    XCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(dest)
