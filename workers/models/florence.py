"""Florence-2 scene context: a detailed caption, security-object detection and text with its regions."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from workers.models.base import ModelInput

# Open-vocabulary detection query (seed, section 1.1): objects that matter on a security camera.
SECURITY_OBJECTS = (
    "person. face. vehicle. car. truck. van. package. box. bag. backpack. weapon. knife. tool. "
    "crowbar. flashlight. animal. dog. cat."
)


@dataclass(frozen=True)
class SceneTask:
    """One Florence-2 task run on the frame and the result key it fills."""

    key: str
    token: str
    text_input: str = ""

    @property
    def prompt(self) -> str:
        return self.token + self.text_input


SECURITY_TASKS: tuple[SceneTask, ...] = (
    SceneTask("caption", "<MORE_DETAILED_CAPTION>"),
    SceneTask("security_objects", "<OPEN_VOCABULARY_DETECTION>", SECURITY_OBJECTS),
    SceneTask("text_regions", "<OCR_WITH_REGION>"),
)
DENSE_REGIONS_TASK = SceneTask("dense_regions", "<DENSE_REGION_CAPTION>")

DEFAULT_MAX_NEW_TOKENS = 256

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


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _box(values: list[float]) -> list[float]:
    return [round(float(v), 4) for v in values]


def polygon_box(polygons: list[list[float]]) -> list[float]:
    """The axis-aligned box around a detection's polygons (flat [x, y, x, y, ...] lists)."""
    points = [polygon[:len(polygon) - len(polygon) % 2] for polygon in polygons]
    xs = [x for polygon in points for x in polygon[0::2]]
    ys = [y for polygon in points for y in polygon[1::2]]
    return _box([min(xs), min(ys), max(xs), max(ys)])


def answer_to_contract(key: str, answer: Any) -> Any:
    """Turn one post_process_generation answer into this model's result shape.

    Open-vocabulary detection may answer with polygons instead of boxes; those are boxed so that
    labels and bboxes stay aligned one to one.
    """
    if key == "caption":
        return str(answer)
    if key == "text_regions":
        return {"labels": list(answer["labels"]), "quad_boxes": [_box(q) for q in answer["quad_boxes"]]}
    if "bboxes_labels" in answer:
        outlined = [
            (label, polygons)
            for label, polygons in zip(answer.get("polygons_labels", []), answer.get("polygons", []))
            if any(len(polygon) >= 2 for polygon in polygons)
        ]
        labels = list(answer["bboxes_labels"]) + [label for label, _ in outlined]
        bboxes = [_box(b) for b in answer["bboxes"]] + [polygon_box(polygons) for _, polygons in outlined]
        return {"labels": labels, "bboxes": bboxes}
    return {"labels": list(answer["labels"]), "bboxes": [_box(b) for b in answer["bboxes"]]}


class FlorenceModel:
    """Florence-2 (transformers-native) run once per event on the full frame."""

    def __init__(
        self,
        path: str,
        device: str,
        *,
        dense_regions: bool | None = None,
        max_new_tokens: int | None = None,
        num_beams: int | None = None,
    ) -> None:
        self.path = path
        self.device = device
        self.dense_regions = _env_flag("FLORENCE_DENSE_REGIONS") if dense_regions is None else dense_regions
        self.max_new_tokens = max_new_tokens or int(os.environ.get("FLORENCE_MAX_NEW_TOKENS", DEFAULT_MAX_NEW_TOKENS))
        env_beams = os.environ.get("FLORENCE_NUM_BEAMS")
        self.num_beams = num_beams or (int(env_beams) if env_beams else None)
        self.model: Any = None
        self.processor: Any = None

    @property
    def tasks(self) -> tuple[SceneTask, ...]:
        return SECURITY_TASKS + ((DENSE_REGIONS_TASK,) if self.dense_regions else ())

    def load(self) -> None:
        import torch
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.processor = AutoProcessor.from_pretrained(self.path)
        self.model = Florence2ForConditionalGeneration.from_pretrained(self.path, dtype=dtype)
        self.model.to(self.device).eval()

    def unload(self) -> None:
        self.model = None
        self.processor = None

    def extract_security_context(self, image: Image.Image) -> dict:
        """Caption, security objects and text regions (plus dense regions when enabled) for one image."""
        return self.extract_security_context_many([image])[0]

    def extract_security_context_many(self, images: list[Image.Image]) -> list[dict]:
        """The scene tasks for each image; every (image, task) pair goes through the model as one padded
        batch, and each answer is parsed by the processor's own post_process_generation for its task."""
        import torch

        if self.model is None:
            raise RuntimeError("FlorenceModel.extract_security_context called before load()")
        images = [image.convert("RGB") for image in images]
        tasks = self.tasks
        pairs = [(image, task) for image in images for task in tasks]
        inputs = self.processor(
            text=[task.prompt for _, task in pairs], images=[image for image, _ in pairs], padding=True,
            return_tensors="pt",
        ).to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        generate_options: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": False}
        if self.num_beams is not None:
            generate_options["num_beams"] = self.num_beams
        with torch.inference_mode():
            generated = self.model.generate(**inputs, **generate_options)
        # Decode with special tokens kept (the location bins are special tokens); drop the padding a
        # shorter answer gets in the batch, which the plain-text parse would otherwise keep.
        pad = self.processor.tokenizer.pad_token
        texts = [t.replace(pad, "") for t in self.processor.batch_decode(generated, skip_special_tokens=False)]
        results: list[dict[str, Any]] = [{} for _ in images]
        for number, ((image, task), text) in enumerate(zip(pairs, texts)):
            parsed = self.processor.post_process_generation(text, task=task.token, image_size=image.size)
            results[number // len(tasks)][task.key] = answer_to_contract(task.key, parsed[task.token])
        return results

    def infer(self, inputs: ModelInput) -> dict:
        return self.extract_security_context(inputs.frame)

    def infer_batch(self, batch: list[ModelInput]) -> list[dict]:
        """The scene tasks for each event's frame, all in one generate call."""
        return self.extract_security_context_many([inputs.frame for inputs in batch])


# --- random-weight models in the on-disk format load() reads ---------------------------------------

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


def build_bart_tokenizer(added_tokens: tuple[str, ...] = FLORENCE_ADDED_TOKENS) -> Any:
    """A BART byte-level BPE tokenizer built offline: specials, the 256 byte symbols, no merges.

    Every byte is its own token (no merges), which is enough to encode any prompt; the Florence
    task/location tokens are added as special tokens and <image> as the processor's image token.
    """
    from transformers import BartTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {token: index for index, token in enumerate(("<s>", "<pad>", "</s>", "<unk>"))}
    for symbol in bytes_to_unicode().values():
        vocab.setdefault(symbol, len(vocab))
    vocab["<mask>"] = len(vocab)
    tokenizer = BartTokenizer(vocab=vocab, merges=[], extra_special_tokens={"image_token": "<image>"})
    tokenizer.add_tokens(list(added_tokens), special_tokens=True)
    return tokenizer


def image_token_count(side: int, patch_stride: list[int]) -> int:
    """Tokens the vision tower yields for a square image: one per final-stage cell, plus one pooled."""
    cells = side
    for stride in patch_stride:
        cells = -(-cells // stride)
    return cells * cells + 1


def write_tiny(dest: Path, full_size: bool = False) -> None:
    """Write a random-weight Florence-2 model directory with its processor, as load() reads it."""
    from transformers import (
        CLIPImageProcessor, Florence2Config, Florence2ForConditionalGeneration, Florence2Processor,
        GenerationConfig,
    )

    shape = FULL_SIZE if full_size else TINY
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = build_bart_tokenizer()
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
