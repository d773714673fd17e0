"""Random-weight Florence-2 (DaViT vision tower + BART), tiny or Florence-2-large-sized, with its processor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.generated.tokenizers import build_bart_tokenizer

# Florence-2's tokenizer is BART's byte-level BPE plus these added tokens: region/task markers and the
# 1000 quantised location bins that detection and OCR answers are written in.
FLORENCE_ADDED_TOKENS: tuple[str, ...] = (
    "<od>", "</od>", "<ocr>", "</ocr>",
    *(f"<loc_{i}>" for i in range(1000)),
    "<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>", "<grounding>", "</grounding>",
    "<seg>", "</seg>", "<sep>", "<region_cap>", "</region_cap>", "<region_to_desciption>",
    "</region_to_desciption>", "<proposal>", "</proposal>", "<poly>", "</poly>", "<and>",
)

# The parse rules Florence2Processor.post_process_generation looks up, one per answer type.
POST_PROCESSOR_CONFIG: dict[str, dict[str, Any]] = {
    "ocr": {"pattern": None, "area_threshold": 0.0},
    "phrase_grounding": {"banned_grounding_tokens": []},
    "pure_text": {},
    "description_with_bboxes": {},
    "description_with_polygons": {},
    "polygons": {},
    "bboxes": {},
    "description_with_bboxes_or_polygons": {},
}

# Florence-2-large's architecture (DaViT vision tower + 12/12-layer BART), for --full-size.
FULL_SIZE = {
    "image_side": 768,
    "vision": {
        "depths": [1, 1, 9, 1], "patch_size": [7, 3, 3, 3], "patch_stride": [4, 2, 2, 2],
        "patch_padding": [3, 1, 1, 1], "patch_prenorm": [False, True, True, True],
        "embed_dim": [256, 512, 1024, 2048], "num_heads": [8, 16, 32, 64], "num_groups": [8, 16, 32, 64],
        "window_size": 12, "projection_dim": 1024,
    },
    "text": {
        "vocab_size": 51290, "d_model": 1024, "encoder_layers": 12, "decoder_layers": 12,
        "encoder_attention_heads": 16, "decoder_attention_heads": 16, "encoder_ffn_dim": 4096,
        "decoder_ffn_dim": 4096, "max_position_embeddings": 1024,
    },
    "generation": {"num_beams": 3, "no_repeat_ngram_size": 3},
}
# Small enough to generate hundreds of tokens per second on one CPU core.
TINY = {
    "image_side": 32,
    "vision": {
        "depths": [1, 1], "patch_size": [7, 3], "patch_stride": [4, 2], "patch_padding": [3, 1],
        "patch_prenorm": [False, True], "embed_dim": [8, 16], "num_heads": [1, 2], "num_groups": [1, 2],
        "window_size": 4, "projection_dim": 16, "max_position_embeddings": 8,
    },
    "text": {
        "d_model": 16, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
        "decoder_attention_heads": 2, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32,
        "max_position_embeddings": 512,
    },
    "generation": {"num_beams": 1},
}


def image_token_count(side: int, patch_stride: list[int]) -> int:
    """Tokens the vision tower yields for a square image: one per final-stage cell, plus one pooled."""
    cells = side
    for stride in patch_stride:
        cells = -(-cells // stride)
    return cells * cells + 1


def write_florence(dest: Path, full_size: bool = False) -> None:
    """Write a random-weight Florence-2 model directory with its processor, as load() reads it."""
    from transformers import (
        CLIPImageProcessor, Florence2Config, Florence2ForConditionalGeneration, Florence2Processor,
        GenerationConfig,
    )

    shape = FULL_SIZE if full_size else TINY
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = build_bart_tokenizer(FLORENCE_ADDED_TOKENS)
    side = shape["image_side"]
    image_processor = CLIPImageProcessor(
        do_resize=True, size={"height": side, "width": side}, do_center_crop=False, resample=3,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
        image_seq_length=image_token_count(side, shape["vision"]["patch_stride"]),
    )
    processor = Florence2Processor(
        image_processor=image_processor, tokenizer=tokenizer, post_processor_config=POST_PROCESSOR_CONFIG
    )
    text_config = {
        "model_type": "bart", "vocab_size": len(tokenizer), "bos_token_id": 0, "pad_token_id": 1,
        "eos_token_id": 2, "decoder_start_token_id": 2, "forced_bos_token_id": 0, "forced_eos_token_id": 2,
        **shape["text"],
    }
    text_config["vocab_size"] = max(text_config["vocab_size"], len(tokenizer))
    config = Florence2Config(
        text_config=text_config,
        vision_config={**shape["vision"], "drop_path_rate": 0.0},
        image_token_id=tokenizer.image_token_id,
    )
    model = Florence2ForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=0, eos_token_id=2, pad_token_id=1, decoder_start_token_id=2, forced_bos_token_id=0,
        forced_eos_token_id=2, **shape["generation"],
    )
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
