"""FashionCLIP clothing classifier: person-crop categories scored against ensembled surveillance prompts."""

from __future__ import annotations

import copy
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.models.base import ModelInput

PROMPTS_FILE = Path(__file__).with_name("clothing_prompts.toml")
PROMPTS_ENV = "CLOTHING_PROMPTS_FILE"

CONFIG_NAME = "open_clip_config.json"  # the layout of an open_clip model repo on the Hugging Face hub
WEIGHTS_NAME = "open_clip_pytorch_model.bin"
CHECKPOINT_PATTERNS = ("*.safetensors", "*.bin", "*.pth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
CLIP_BPE_VOCAB_SIZE = 49408  # open_clip's bundled SimpleTokenizer vocabulary
TEXT_BATCH = 64  # prompts encoded per forward pass while precomputing

# CLIP's normalisation, as Marqo/marqo-fashionCLIP ships it.
OPENAI_PREPROCESS = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}
# A few-layer ViT and text tower: same code path as ViT-B-16, ~2 M parameters, mostly the token embedding.
TINY_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": CLIP_BPE_VOCAB_SIZE, "width": 32, "heads": 2, "layers": 2},
}
FULL_MODEL_NAME = "ViT-B-16"  # Marqo/marqo-fashionCLIP's architecture


@dataclass(frozen=True)
class ClothingPrompts:
    """Templates that set the camera context, and the prompts of each clothing category."""

    templates: tuple[str, ...]
    categories: dict[str, tuple[str, ...]]

    def texts(self) -> list[str]:
        """Every prompt in every template, prompt-major: [p0 t0, p0 t1, ..., p1 t0, ...]."""
        return [t.format(p) for prompts in self.categories.values() for p in prompts for t in self.templates]


def load_prompts(path: Path | str | None = None) -> ClothingPrompts:
    """Read the prompt table (CLOTHING_PROMPTS_FILE, else the bundled TOML) and check its shape."""
    path = Path(path or os.environ.get(PROMPTS_ENV) or PROMPTS_FILE)
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


def model_dir(path: str | Path) -> Path:
    """The open_clip model directory (a checkpoint file's path resolves to its folder)."""
    path = Path(path)
    return path.parent if path.is_file() else path


def _open_clip_config(directory: Path) -> dict[str, Any]:
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: the clothing model directory needs an open_clip config")
    if not any(any(directory.glob(pattern)) for pattern in CHECKPOINT_PATTERNS):
        raise FileNotFoundError(f"no open_clip checkpoint (*.safetensors, *.bin, *.pth) in {directory}")
    return json.loads(config_path.read_text(encoding="utf-8"))


def _tokenizer(directory: Path, text_cfg: dict[str, Any]):
    """The model's tokenizer, from local files only.

    A config naming an HF tokenizer uses the tokenizer files beside it; without them, a tower with
    CLIP's BPE vocabulary falls back to open_clip's bundled SimpleTokenizer (the same vocabulary).
    """
    import open_clip

    has_local = any((directory / name).is_file() for name in TOKENIZER_FILES)
    if text_cfg.get("hf_tokenizer_name") and not has_local:
        if text_cfg.get("vocab_size", CLIP_BPE_VOCAB_SIZE) != CLIP_BPE_VOCAB_SIZE:
            raise FileNotFoundError(
                f"{directory}: config names tokenizer {text_cfg['hf_tokenizer_name']!r} but no tokenizer files "
                "are stored beside it (download the full model repository)"
            )
        return open_clip.SimpleTokenizer(context_length=text_cfg.get("context_length", 77))
    return open_clip.get_tokenizer(f"local-dir:{directory}")


class ClothingModel:
    """Zero-shot clothing categories for a person crop (Marqo FashionCLIP through open_clip).

    Text embeddings for every prompt are computed once per load(); infer() only encodes the image.
    infer() after unload() raises RuntimeError: the model cache is expected to load() again.
    """

    def __init__(self, path: str, device: str) -> None:
        self.path = path
        self.device = device
        self.prompts = load_prompts()
        self._model = None
        self._preprocess = None
        self._tokenizer = None
        self.text_embeddings: dict[str, Any] | None = None

    def load(self) -> None:
        import open_clip
        import torch

        directory = model_dir(self.path)
        config = _open_clip_config(directory)
        # Letterbox rather than centre-crop: a person crop is tall, and hoods, masks and carried
        # items sit at its ends.
        model, _, preprocess = open_clip.create_model_and_transforms(
            f"local-dir:{directory}", device=self.device, image_resize_mode="longest"
        )
        model.eval()
        tokenizer = _tokenizer(directory, config["model_cfg"].get("text_cfg", {}))
        with torch.inference_mode():
            self.text_embeddings = self._encode_prompts(model, tokenizer)
        self._model, self._preprocess, self._tokenizer = model, preprocess, tokenizer

    def _encode_prompts(self, model, tokenizer) -> dict[str, Any]:
        """Per prompt: embed it in every template, normalise, average, renormalise; grouped by category."""
        import torch

        texts = self.prompts.texts()
        chunks = [
            model.encode_text(tokenizer(texts[i : i + TEXT_BATCH]).to(self.device)) for i in range(0, len(texts), TEXT_BATCH)
        ]
        per_template = torch.cat(chunks).float().reshape(-1, len(self.prompts.templates), chunks[0].shape[-1])
        per_template = per_template / per_template.norm(dim=-1, keepdim=True)
        ensembled = per_template.mean(dim=1)
        ensembled = ensembled / ensembled.norm(dim=-1, keepdim=True)
        sizes = [len(prompts) for prompts in self.prompts.categories.values()]
        return dict(zip(self.prompts.categories, torch.split(ensembled, sizes)))

    def unload(self) -> None:
        self._model = self._preprocess = self._tokenizer = self.text_embeddings = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def infer(self, inputs: ModelInput) -> dict:
        return self.infer_batch([inputs])[0]

    def infer_batch(self, batch: list[ModelInput]) -> list[dict]:
        """Each detection's crop against the cached prompt embeddings; the crops are encoded in one pass."""
        if self._model is None or self.text_embeddings is None:
            raise RuntimeError("clothing model is not loaded; call load() first")
        import torch

        images = torch.stack([self._preprocess(inputs.person_crop()) for inputs in batch]).to(self.device)
        with torch.inference_mode():
            features = self._model.encode_image(images).float()
            features = features / features.norm(dim=-1, keepdim=True)
            scale = self._model.logit_scale.exp().float()
            probabilities = {
                category: (scale * features @ embeddings.T).softmax(dim=-1).tolist()
                for category, embeddings in self.text_embeddings.items()
            }
        return [
            {category: category_result(self.prompts.categories[category], rows[row]) for category, rows in probabilities.items()}
            for row in range(len(batch))
        ]


def write_tiny(dest: Path, full_size: bool = False) -> None:
    """Write a randomly initialised open_clip model in the Hugging Face repo layout the loader reads."""
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
