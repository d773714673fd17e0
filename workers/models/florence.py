"""Florence-2 scene context: a detailed caption, security-object detection and text with its regions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from PIL import Image

from workers.finishing import Finishing
from workers.models.base import ModelInput
from workers.models.hf_family import HuggingFaceFamily
from workers.plate_text import plates_in_text_regions

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


# The seed's extract_security_context keys: scene (a string), security_objects and text_regions.
SECURITY_TASKS: tuple[SceneTask, ...] = (
    SceneTask("scene", "<MORE_DETAILED_CAPTION>"),
    SceneTask("security_objects", "<OPEN_VOCABULARY_DETECTION>", SECURITY_OBJECTS),
    SceneTask("text_regions", "<OCR_WITH_REGION>"),
)
DENSE_REGIONS_TASK = SceneTask("dense_regions", "<DENSE_REGION_CAPTION>")


def _box(values: list[float]) -> list[float]:
    return [round(float(v), 4) for v in values]


def polygon_box(polygons: list[list[float]]) -> list[float]:
    """The axis-aligned box around a detection's polygons (flat [x, y, x, y, ...] lists)."""
    points = [polygon[:len(polygon) - len(polygon) % 2] for polygon in polygons]
    xs = [x for polygon in points for x in polygon[0::2]]
    ys = [y for polygon in points for y in polygon[1::2]]
    return _box([min(xs), min(ys), max(xs), max(ys)])


def special_tokens_pattern(tokenizer: Any) -> re.Pattern[str]:
    """The tokenizer's own special tokens (location bins, task and structure tokens, <s>, <pad> ...) as one pattern."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    tokens = {token.content for token in added.values() if getattr(token, "special", False)}
    tokens |= set(getattr(tokenizer, "all_special_tokens", ()))
    tokens = sorted((t for t in tokens if t), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, tokens))) if tokens else re.compile(r"(?!x)x")


# What is left of a location token once the parse has taken its "<" for a box ("loc_461>"), and stray brackets.
TOKEN_FRAGMENTS = re.compile(r"<?/?loc_\d+>?|[<>]")


def without_special_tokens(text: Any, special: re.Pattern[str] | None) -> str:
    """Text with every special token the processor's parse left in it removed (random weights leave many), and the
    fragments of location tokens the parse split ("loc_461>")."""
    text = str(text)
    if special is not None:
        text = special.sub(" ", text)
    return " ".join(TOKEN_FRAGMENTS.sub(" ", text).split())


def labelled(labels: list[str], boxes: list[Any]) -> tuple[list[str], list[Any]]:
    """Label and box pairs whose label is left after cleaning (an empty one was only tokens)."""
    kept = [(label, box) for label, box in zip(labels, boxes) if label]
    return [label for label, _ in kept], [box for _, box in kept]


def answer_to_contract(key: str, answer: Any, special: re.Pattern[str] | None = None) -> Any:
    """Turn one post_process_generation answer into this model's result shape.

    Open-vocabulary detection may answer with polygons instead of boxes; those are boxed so that
    labels and bboxes stay aligned one to one. Special tokens the parse left in a caption or a label are removed
    (`special`: the tokenizer's own, special_tokens_pattern).
    """
    if key == "scene":
        return without_special_tokens(answer, special)
    answer = dict(answer)
    for labels in ("labels", "bboxes_labels", "polygons_labels"):
        if labels in answer:
            answer[labels] = [without_special_tokens(label, special) for label in answer[labels]]
    if key == "text_regions":
        labels, quads = labelled([without_special_tokens(t, special) for t in answer["labels"]],
                                 [_box(q) for q in answer["quad_boxes"]])
        return {"labels": labels, "quad_boxes": quads}
    if "bboxes_labels" in answer:
        outlined = [
            (label, polygons)
            for label, polygons in zip(answer.get("polygons_labels", []), answer.get("polygons", []))
            if any(len(polygon) >= 2 for polygon in polygons)
        ]
        labels = list(answer["bboxes_labels"]) + [label for label, _ in outlined]
        bboxes = [_box(b) for b in answer["bboxes"]] + [polygon_box(polygons) for _, polygons in outlined]
        labels, bboxes = labelled(labels, bboxes)
        return {"labels": labels, "bboxes": bboxes}
    labels, bboxes = labelled(list(answer["labels"]), [_box(b) for b in answer["bboxes"]])
    return {"labels": labels, "bboxes": bboxes}


class FlorenceModel(HuggingFaceFamily):
    """Florence-2 (transformers-native) run once per event on the full frame.

    Generation follows the zoo settings: florence_max_new_tokens, florence_num_beams (the checkpoint's own
    when unset) and florence_dense_regions (adds <DENSE_REGION_CAPTION>).
    """

    model_class = "Florence2ForConditionalGeneration"
    half_on_cuda = True
    batchable = True

    @property
    def tasks(self) -> tuple[SceneTask, ...]:
        return SECURITY_TASKS + ((DENSE_REGIONS_TASK,) if self.zoo.florence_dense_regions else ())

    def generate_options(self) -> dict[str, Any]:
        """Bounded, deterministic generation; beams only when configured."""
        options: dict[str, Any] = {"max_new_tokens": self.zoo.florence_max_new_tokens, "do_sample": False}
        if self.zoo.florence_num_beams is not None:
            options["num_beams"] = self.zoo.florence_num_beams
        return options

    def special_tokens(self) -> re.Pattern[str]:
        """The loaded processor's special tokens, built once per load."""
        cached = getattr(self, "_special", None)
        if cached is None or cached[0] is not self.processor:
            cached = (self.processor, special_tokens_pattern(self.processor.tokenizer))
            self._special = cached
        return cached[1]

    def extract_security_context_many(self, images: list[Image.Image]) -> list[dict]:
        """The scene tasks for each image; every (image, task) pair goes through the model as one padded
        batch, and each answer is parsed by the processor's own post_process_generation for its task."""
        import torch

        model = self.require_loaded()
        images = [image.convert("RGB") for image in images]
        tasks = self.tasks
        pairs = [(image, task) for image in images for task in tasks]
        inputs = self.processor(
            text=[task.prompt for _, task in pairs], images=[image for image, _ in pairs], padding=True,
            return_tensors="pt",
        ).to(self.device)
        inputs["pixel_values"] = self.to_model(inputs["pixel_values"])
        with torch.inference_mode():
            generated = model.generate(**inputs, **self.generate_options())
        # Decode with special tokens kept (the location bins are special tokens); drop the padding a
        # shorter answer gets in the batch, which the plain-text parse would otherwise keep.
        pad = self.processor.tokenizer.pad_token
        texts = [t.replace(pad, "") for t in self.processor.batch_decode(generated, skip_special_tokens=False)]
        special = self.special_tokens()
        results: list[dict[str, Any]] = [{} for _ in images]
        for number, ((image, task), text) in enumerate(zip(pairs, texts)):
            parsed = self.processor.post_process_generation(text, task=task.token, image_size=image.size)
            results[number // len(tasks)][task.key] = answer_to_contract(task.key, parsed[task.token], special)
        return results

    def infer_batch(self, batch: list[ModelInput]) -> list[dict]:
        """The scene tasks for each event's frame, all in one generate call."""
        return self.extract_security_context_many([inputs.frame for inputs in batch])


def read_plates(enrichment: dict[str, Any], finishing: Finishing) -> None:
    """A vehicle event's plate: Florence's OCR reads inside the vehicle's box that normalise to a plate (the resident
    scene model reads the frame's text already, so no plate model is loaded), matched exactly against the
    household's registered vehicles. Florence gives no per-read confidence: none is claimed."""
    event = finishing.event
    florence = (enrichment.get("scene") or {}).get("florence")
    if event is None or event.detection_type != "vehicle" or not isinstance(florence, dict):
        return
    reads = plates_in_text_regions(florence.get("text_regions"), tuple(event.bbox))
    if not reads:
        return
    plate: dict[str, Any] = {"text": reads[0]["plate"], "read_as": reads[0]["text"], "source": "florence_ocr",
                             "confidence": None, "registered": None}
    household = enrichment.setdefault("household", {})
    household["plate"] = plate
    if finishing.household is None:
        return
    try:
        vehicle = finishing.household.match_plate(plate["text"])
    except Exception as exc:
        finishing.unavailable["household"] = f"error: {type(exc).__name__}"
        return
    plate["registered"] = vehicle is not None
    if vehicle is not None:
        plate["vehicle"] = {"plate": vehicle.plate, "description": vehicle.description}
