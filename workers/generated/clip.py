"""Random-weight transformers CLIP (the scene embedder), tiny or ViT-L/14-sized, with its processor."""

from __future__ import annotations

from pathlib import Path

from workers.generated.tokenizers import build_clip_tokenizer

# CLIP's normalisation, as the CLIP, X-CLIP and FashionCLIP checkpoints ship it.
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

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


def write_clip(dest: Path, full_size: bool = False) -> None:
    """Write a random-weight CLIPModel directory with a processor (tokenizer + image processor)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

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
    CLIPModel(config).eval().save_pretrained(dest)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(dest)
