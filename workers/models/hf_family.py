"""The Hugging Face kind of family: processor and model from a local directory, dtype, eval mode; image classifiers.

A family names its transformers classes (`processor_class`, `model_class`) or overrides load_processor() /
load_model(). Every family runs in float16 on a GPU (classifiers, X-CLIP, CLIP, Depth Anything, Florence-2:
scores are computed in float32 from the half-precision logits) unless it sets `half_on_cuda = False`; on a
CPU all run in float32. transformers 5 builds the model on the meta device and reads the safetensors straight
into it (no random initialisation), cast to that dtype, then moves it to the device; loading straight onto the
GPU (`device_map`) needs accelerate, which the pool does not install. Image classifiers label the detection
crop with the checkpoint's own config.id2label (softmax scores, 4 dp). torch and transformers are imported
inside methods so importing a family stays light.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from prompt_formatting.vocabulary import CLASSIFIER_CONFIDENCE_FLOOR, PLACEHOLDER_LABEL, readable_label
from workers.finishing import Finisher, Finishing
from workers.models.base import WEIGHT_SUFFIXES, ModelFamily, ModelInput, weight_files

SCORE_DIGITS = 4


class HuggingFaceFamily(ModelFamily):
    """A transformers model and its processor, read from the model directory only (never the network)."""

    processor_class: ClassVar[str] = "AutoProcessor"
    model_class: ClassVar[str]
    half_on_cuda: ClassVar[bool] = True
    loaded_attributes = ("model", "processor")
    processor: Any

    @classmethod
    def weight_files(cls, path: Path) -> list[Path]:
        """The checkpoint's safetensors (or, without them, its pytorch_model*.bin files)."""
        return weight_files(path, (WEIGHT_SUFFIXES[0], (".bin",)))

    @classmethod
    def import_libraries(cls, path: Path) -> None:
        """transformers, the checkpoint's own modeling module and its processor (files only, no device)."""
        import transformers

        transformers.utils.logging.disable_progress_bar()  # one "Loading weights" bar per load fills worker logs
        config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
        importlib.import_module(type(config).__module__.replace(".configuration_", ".modeling_"))
        getattr(transformers, cls.processor_class).from_pretrained(str(path), local_files_only=True)

    @property
    def dtype(self) -> Any:
        """float16 on a GPU (unless the family opts out), else float32."""
        import torch

        return torch.float16 if self.runs_in_half(self.device) else torch.float32

    def pretrained(self, cls: Any, **options: Any) -> Any:
        """cls.from_pretrained on the model directory, local files only."""
        return cls.from_pretrained(str(self.path), local_files_only=True, **options)

    def load_processor(self) -> Any:
        import transformers

        return self.pretrained(getattr(transformers, self.processor_class))

    def load_model(self) -> Any:
        import transformers

        return self.pretrained(getattr(transformers, self.model_class), dtype=self.dtype)

    def _load(self) -> None:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        self.processor = self.load_processor()
        self.model = self.load_model().to(self.device).eval()

    def to_model(self, tensor: Any) -> Any:
        """A pixel tensor moved to the model's device and dtype."""
        return tensor.to(self.device, dtype=self.require_loaded().dtype)

    def pixel_values(self, images: list[Image.Image]) -> Any:
        """The processor's pixel_values for RGB copies of images, on the model's device and dtype."""
        self.require_loaded()
        batch = self.processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
        return self.to_model(batch["pixel_values"])

    def forward_images(self, images: list[Image.Image]) -> Any:
        """The model's outputs for images: their pixel values through one forward pass, without autograd."""
        import torch

        pixel_values = self.pixel_values(images)
        with torch.inference_mode():
            return self.model(pixel_values=pixel_values)


class ImageClassifierFamily(HuggingFaceFamily):
    """Any AutoModelForImageClassification: ranked labels from the checkpoint's config.id2label."""

    processor_class = "AutoImageProcessor"
    model_class = "AutoModelForImageClassification"

    @property
    def labels(self) -> list[str]:
        """The model's own class names, in index order."""
        id2label = self.require_loaded().config.id2label
        return [str(id2label[i]) for i in range(len(id2label))]

    def probabilities(self, images: list[Image.Image]) -> list[list[float]]:
        """Softmax over the model's classes for each image, in one forward pass."""
        return self.forward_images(images).logits.float().softmax(dim=-1).cpu().tolist()

    def classify_many(self, images: list[Image.Image], top_k: int = 5) -> list[dict]:
        """Per image: best label, its confidence and the top_k labels with scores (highest first)."""
        answers = []
        for probs in self.probabilities(images):
            id2label = self.model.config.id2label
            order = sorted(range(len(probs)), key=lambda i: probs[i], reverse=True)[: max(1, top_k)]
            ranked = [{"label": str(id2label[i]), "score": round(float(probs[i]), SCORE_DIGITS)} for i in order]
            answers.append({"label": ranked[0]["label"], "confidence": ranked[0]["score"], "top_k": ranked})
        return answers

    def classify(self, image: Image.Image, top_k: int = 5) -> dict:
        """Best label, its confidence and the top_k labels with scores (highest first)."""
        return self.classify_many([image], top_k)[0]


class CropClassifierFamily(ImageClassifierFamily):
    """Classifies each detection's box (vehicle, pet): label, confidence and the top_k ranked labels."""

    batchable = True
    top_k: ClassVar[int] = 3

    def infer_batch(self, batch: list[ModelInput]) -> list[dict]:
        """The crops of a micro-batch through the classifier in one forward pass."""
        return self.classify_many([inputs.person_crop() for inputs in batch], top_k=self.top_k)


def classified_type(result: Mapping[str, Any], excluded: frozenset[str]) -> str | None:
    """The type a classifier names, as the prompt names it: the best label that is not an excluded class
    (background, pedestrian, person ...) nor a placeholder, made readable ("Pickup_Trucks" -> "pickup truck");
    None when there is none or its score is below CLASSIFIER_CONFIDENCE_FLOOR (too unsure to name)."""
    scores: dict[str, float | None] = {}
    top = readable_label(result.get("label"))
    if top is not None:
        confidence = result.get("confidence")
        scores[top] = float(confidence) if isinstance(confidence, (int, float)) else None
    for entry in result.get("top_k") or []:
        name = readable_label(entry.get("label")) if isinstance(entry, Mapping) else None
        if name is not None and name not in scores:
            score = entry.get("score")
            scores[name] = float(score) if isinstance(score, (int, float)) else None
    ranked = sorted(scores.items(), key=lambda item: -(item[1] if item[1] is not None else -1.0))
    for name, score in ranked:
        if name in excluded or PLACEHOLDER_LABEL.fullmatch(name):
            continue
        return name if score is None or score >= CLASSIFIER_CONFIDENCE_FLOOR else None
    return None


def type_namer(section: str, key: str, excluded: frozenset[str]) -> Finisher:
    """A finisher that stores the classifier's readable type at section[key] (null: unsure, or no such class)."""

    def name_type(enrichment: dict[str, Any], finishing: Finishing) -> None:
        result = enrichment.get(section)
        if isinstance(result, dict):
            result[key] = classified_type(result, excluded)

    name_type.__doc__ = f"{section}.{key}: the readable type {section} names, beside the classifier's own label"
    return name_type
