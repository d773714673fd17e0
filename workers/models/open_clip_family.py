"""The open_clip kind of family: a Hugging Face-style open_clip model directory, its tokenizer, letterboxed images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from workers.models.base import ModelFamily

CONFIG_NAME = "open_clip_config.json"  # the layout of an open_clip model repo on the Hugging Face hub
CHECKPOINT_PATTERNS = ("*.safetensors", "*.bin", "*.pth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
CLIP_BPE_VOCAB_SIZE = 49408  # open_clip's bundled SimpleTokenizer vocabulary
TEXT_BATCH = 64  # texts encoded per forward pass


def model_dir(path: str | Path) -> Path:
    """The open_clip model directory (a checkpoint file's path resolves to its folder)."""
    path = Path(path)
    return path.parent if path.is_file() else path


def open_clip_config(directory: Path) -> dict[str, Any]:
    """The directory's open_clip config, once a checkpoint is known to sit beside it."""
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: the model directory needs an open_clip config")
    if not any(any(directory.glob(pattern)) for pattern in CHECKPOINT_PATTERNS):
        raise FileNotFoundError(f"no open_clip checkpoint (*.safetensors, *.bin, *.pth) in {directory}")
    return json.loads(config_path.read_text(encoding="utf-8"))


def local_tokenizer(directory: Path, text_cfg: dict[str, Any]) -> Any:
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


class OpenClipFamily(ModelFamily):
    """An open_clip model in eval mode with its image transform and tokenizer; unit-length image features."""

    loaded_attributes = ("model", "preprocess", "tokenizer")
    preprocess: Any
    tokenizer: Any

    def _load(self) -> None:
        import open_clip

        directory = model_dir(self.path)
        config = open_clip_config(directory)
        # Letterbox rather than centre-crop: a person crop is tall, and hoods, masks and carried
        # items sit at its ends.
        model, _, preprocess = open_clip.create_model_and_transforms(
            f"local-dir:{directory}", device=self.device, image_resize_mode="longest"
        )
        model.eval()
        self.tokenizer = local_tokenizer(directory, config["model_cfg"].get("text_cfg", {}))
        self.model, self.preprocess = model, preprocess

    def encode_texts(self, texts: list[str]) -> Any:
        """Text features (not normalised), TEXT_BATCH texts per forward pass, as float32."""
        import torch

        model = self.require_loaded()
        chunks = [
            model.encode_text(self.tokenizer(texts[i : i + TEXT_BATCH]).to(self.device))
            for i in range(0, len(texts), TEXT_BATCH)
        ]
        return torch.cat(chunks).float()

    def encode_images(self, images: list[Image.Image]) -> Any:
        """Unit-length image features, the images transformed and encoded in one pass."""
        import torch

        model = self.require_loaded()
        pixels = torch.stack([self.preprocess(image) for image in images]).to(self.device)
        features = model.encode_image(pixels).float()
        return features / features.norm(dim=-1, keepdim=True)
