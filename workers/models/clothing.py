"""FashionCLIP clothing classifier: person-crop categories scored against ensembled surveillance prompts."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.models.base import ModelInput
from workers.models.open_clip_family import OpenClipFamily
from workers.settings import ZooSettings

PROMPTS_FILE = Path(__file__).with_name("clothing_prompts.toml")


@dataclass(frozen=True)
class ClothingPrompts:
    """Templates that set the camera context, and the prompts of each clothing category."""

    templates: tuple[str, ...]
    categories: dict[str, tuple[str, ...]]

    def texts(self) -> list[str]:
        """Every prompt in every template, prompt-major: [p0 t0, p0 t1, ..., p1 t0, ...]."""
        return [t.format(p) for prompts in self.categories.values() for p in prompts for t in self.templates]


def load_prompts(path: Path | str | None = None) -> ClothingPrompts:
    """Read the prompt table (the given file, else the bundled TOML) and check its shape."""
    path = Path(path or PROMPTS_FILE)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    templates = tuple(data.get("templates", ()))
    categories = {name: tuple(prompts) for name, prompts in data.get("categories", {}).items()}
    if not templates or any(t.count("{}") != 1 for t in templates):
        raise ValueError(f"{path}: 'templates' must be a non-empty list, each with exactly one '{{}}'")
    if not categories or any(not prompts for prompts in categories.values()):
        raise ValueError(f"{path}: [categories] must name at least one category, none of them empty")
    return ClothingPrompts(templates, categories)


def category_result(prompts: tuple[str, ...], probabilities: list[float]) -> dict[str, Any]:
    """The contract entry for one category from its softmax over prompts."""
    best = max(range(len(prompts)), key=probabilities.__getitem__)
    return {
        "top_match": prompts[best],
        "confidence": round(float(probabilities[best]), 4),
        "all_scores": {p: round(float(s), 4) for p, s in zip(prompts, probabilities)},
    }


class ClothingModel(OpenClipFamily):
    """Zero-shot clothing categories for a person crop (Marqo FashionCLIP through open_clip).

    The prompt table is the zoo's clothing_prompts_file (CLOTHING_PROMPTS_FILE), else the bundled one.
    Text features of every prompt are encoded once (then read from the open_clip kind's cache on every reload)
    and ensembled at load(); infer() only encodes the image.
    """

    batchable = True
    loaded_attributes = OpenClipFamily.loaded_attributes + ("text_embeddings",)
    text_embeddings: dict[str, Any] | None

    def __init__(self, path: str | Path, device: str, zoo: ZooSettings | None = None) -> None:
        super().__init__(path, device, zoo)
        self.prompts = load_prompts(self.zoo.clothing_prompts_file)

    def _load(self) -> None:
        import torch

        super()._load()
        with torch.inference_mode():
            self.text_embeddings = self._encode_prompts()

    def _encode_prompts(self) -> dict[str, Any]:
        """Per prompt: embed it in every template, normalise, average, renormalise; grouped by category."""
        import torch

        features = self.cached_text_features(self.prompts.texts())
        per_template = features.reshape(-1, len(self.prompts.templates), features.shape[-1])
        per_template = per_template / per_template.norm(dim=-1, keepdim=True)
        ensembled = per_template.mean(dim=1)
        ensembled = ensembled / ensembled.norm(dim=-1, keepdim=True)
        sizes = [len(prompts) for prompts in self.prompts.categories.values()]
        return dict(zip(self.prompts.categories, torch.split(ensembled, sizes)))

    def infer_batch(self, batch: list[ModelInput]) -> list[dict]:
        """Each detection's crop against the cached prompt embeddings; the crops are encoded in one pass."""
        import torch

        with torch.inference_mode():
            features = self.encode_images([inputs.person_crop() for inputs in batch])
            scale = self.model.logit_scale.exp().float()
            probabilities = {
                category: (scale * features @ embeddings.T).softmax(dim=-1).tolist()
                for category, embeddings in self.text_embeddings.items()
            }
        return [
            {category: category_result(self.prompts.categories[category], rows[row]) for category, rows in probabilities.items()}
            for row in range(len(batch))
        ]
