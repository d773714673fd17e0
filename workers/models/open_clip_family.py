"""The open_clip kind of family: a Hugging Face-style open_clip model directory, its tokenizer, letterboxed images.

Loading builds the network straight on the device without random initial weights, reads the checkpoint through
a memory map (no copy of a .bin into RAM first) and runs it in float16 on a GPU (float32 on a CPU). Text
features of fixed prompt lists are cached per process and on disk, keyed by the checkpoint, its config, the
texts and the precision, so a reload does not encode them again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from workers.models.base import ModelFamily, found_file, skip_random_init

log = logging.getLogger(__name__)

CONFIG_NAME = "open_clip_config.json"  # the layout of an open_clip model repo on the Hugging Face hub
CHECKPOINT_PATTERNS = ("*.safetensors", "*.bin", "*.pth")
# open_clip's own preference among several checkpoints in one directory (its factory._find_checkpoint_in_dir)
PREFERRED_CHECKPOINTS = (
    "open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth", "model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
CLIP_BPE_VOCAB_SIZE = 49408  # open_clip's bundled SimpleTokenizer vocabulary
TEXT_BATCH = 256  # texts encoded per forward pass (a prompt table's ~140 texts go in one)
TEXT_FEATURES_DIR = ".text-features"  # beside the weights; the system temp folder when that is read-only
RANDOM_INIT_WARNING = "No pretrained weights loaded for model"  # open_clip's words when load_weights=False

_text_features: dict[str, Any] = {}  # cache key -> float32 CPU tensor, for reloads in this process
_text_features_lock = threading.Lock()
_tokenizers: dict[str, Any] = {}  # directory and text config -> tokenizer
_tokenizers_lock = threading.Lock()


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


def checkpoint_file(directory: Path) -> Path:
    """The checkpoint open_clip itself would pick: a preferred name, else safetensors first, else the first by name."""
    found = sorted(p for pattern in CHECKPOINT_PATTERNS for p in directory.glob(pattern) if p.is_file())
    if not found:
        raise FileNotFoundError(f"no open_clip checkpoint (*.safetensors, *.bin, *.pth) in {directory}")
    for name in PREFERRED_CHECKPOINTS:
        if (directory / name) in found:
            return directory / name
    return sorted(found, key=lambda p: p.suffix != ".safetensors")[0]


def local_tokenizer(directory: Path, text_cfg: dict[str, Any]) -> Any:
    """The model's tokenizer, from local files only; built once per process and directory (it holds no tensors).

    A config naming an HF tokenizer uses the tokenizer files beside it; without them, a tower with
    CLIP's BPE vocabulary falls back to open_clip's bundled SimpleTokenizer (the same vocabulary).
    """
    key = json.dumps([str(directory.resolve()), text_cfg], sort_keys=True, default=str)
    with _tokenizers_lock:
        if key not in _tokenizers:
            _tokenizers[key] = _build_tokenizer(directory, text_cfg)
        return _tokenizers[key]


def _build_tokenizer(directory: Path, text_cfg: dict[str, Any]) -> Any:
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


def read_state_dict(checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's tensors on the CPU, memory-mapped (nothing copied until the model takes them)."""
    if checkpoint.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(checkpoint), device="cpu")
    else:
        import torch

        state = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return {key.removeprefix("module."): value for key, value in state.items()}


def load_state_into(model: Any, state: dict[str, Any], assign: bool = False) -> None:
    """open_clip's load_checkpoint on a state dict already read: its format conversions, then a strict load.

    With assign the model takes the state's tensors as they are (no copy: on a CPU in float32, the memory map
    itself) instead of copying them into its own.
    """
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

    state = convert_state_dict(model, state)
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    for name in ("logit_scale", "logit_bias"):
        mine = getattr(model, name, None)
        if name in state and mine is not None and mine.ndim != state[name].ndim:
            state[name] = state[name].reshape(mine.shape)
    if "logit_bias" not in state and getattr(model, "logit_bias", None) is not None:
        import torch

        state["logit_bias"] = torch.zeros_like(state["logit_scale"])
    resize_pos_embed(state, model)
    resize_text_pos_embed(state, model)
    model.load_state_dict(state, strict=True, assign=assign)


class _DropMessage(logging.Filter):
    """Drops one message logged by this thread (open_clip's warning that it built random weights: we load them next)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix, self.thread = prefix, threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.thread == self.thread and str(record.msg).startswith(self.prefix))


@contextmanager
def without_message(prefix: str) -> Iterator[None]:
    root = logging.getLogger()
    dropped = _DropMessage(prefix)
    root.addFilter(dropped)
    try:
        yield
    finally:
        root.removeFilter(dropped)


def text_features_dirs(directory: Path) -> list[Path]:
    """Where cached text features are looked for and written: beside the weights, then the system temp folder."""
    return [directory / TEXT_FEATURES_DIR, Path(tempfile.gettempdir()) / "model-zoo-text-features"]


def read_text_features(key: str, directory: Path) -> Any | None:
    from safetensors.torch import load_file

    for folder in text_features_dirs(directory):
        path = folder / f"{key}.safetensors"
        if path.is_file():
            try:
                return load_file(str(path))["features"]
            except Exception as exc:  # a damaged cache file is recomputed and rewritten
                log.warning("ignoring cached text features %s: %s", path, exc)
    return None


def write_text_features(key: str, directory: Path, features: Any) -> Path | None:
    """Write atomically to the first folder that takes it; None when none does (the cache is then per process)."""
    from safetensors.torch import save_file

    for folder in text_features_dirs(directory):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            partial = folder / f".{key}.{os.getpid()}.partial"
            save_file({"features": features.contiguous()}, str(partial))
            os.replace(partial, folder / f"{key}.safetensors")
            return folder / f"{key}.safetensors"
        except OSError:
            continue
    return None


class OpenClipFamily(ModelFamily):
    """An open_clip model in eval mode with its image transform and tokenizer; unit-length image features."""

    loaded_attributes = ("model", "preprocess", "tokenizer")
    preprocess: Any
    tokenizer: Any

    half_on_cuda = True

    @classmethod
    def weight_files(cls, path: Path) -> list[Path]:
        return found_file(lambda found: checkpoint_file(model_dir(found)), path)

    @classmethod
    def import_libraries(cls, path: Path) -> None:
        """open_clip and the model's tokenizer (files only)."""
        directory = model_dir(path)
        local_tokenizer(directory, open_clip_config(directory)["model_cfg"].get("text_cfg", {}))

    @property
    def precision(self) -> str:
        return "fp16" if self.runs_in_half(self.device) else "fp32"

    def _load(self) -> None:
        import open_clip
        import torch

        directory = model_dir(self.path)
        config = open_clip_config(directory)
        checkpoint = checkpoint_file(directory)
        # Built on the device, its random initialisation skipped; the checkpoint fills every weight (strict load).
        # Letterbox rather than centre-crop: a person crop is tall, and hoods, masks and carried items sit at its ends.
        # (open_clip.create_model_and_transforms, split so that only the network is built under the device context.)
        from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_kwargs

        with skip_random_init(), torch.device(self.device), without_message(RANDOM_INIT_WARNING):
            model = open_clip.create_model(
                f"local-dir:{directory}", load_weights=False, device=self.device, precision=self.precision,
                force_preprocess_cfg=merge_preprocess_kwargs({}, resize_mode="longest"),
            )
        load_state_into(model, read_state_dict(checkpoint), assign=self.device == "cpu" and self.precision == "fp32")
        model.eval()
        preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
        self.tokenizer = local_tokenizer(directory, config["model_cfg"].get("text_cfg", {}))
        self.model, self.preprocess = model, preprocess

    @property
    def dtype(self) -> Any:
        """The dtype images are fed in: the model's own (float16 on a GPU)."""
        import torch

        return torch.float16 if self.runs_in_half(self.device) else torch.float32

    def encode_texts(self, texts: list[str]) -> Any:
        """Text features (not normalised), TEXT_BATCH texts per forward pass, as float32."""
        import torch

        model = self.require_loaded()
        with torch.inference_mode():
            chunks = [
                model.encode_text(self.tokenizer(texts[i : i + TEXT_BATCH]).to(self.device))
                for i in range(0, len(texts), TEXT_BATCH)
            ]
        return torch.cat(chunks).float()

    def text_features_key(self, texts: list[str]) -> str:
        """What the features of texts depend on: the checkpoint (name, size, time), the config, texts, precision."""
        directory = model_dir(self.path)
        checkpoint = checkpoint_file(directory)
        stat = checkpoint.stat()
        identity = {
            "checkpoint": [checkpoint.name, stat.st_size, stat.st_mtime_ns],
            "config": (directory / CONFIG_NAME).read_text(encoding="utf-8"),
            "texts": texts,
            "precision": self.precision,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]

    def cached_text_features(self, texts: list[str]) -> Any:
        """encode_texts(texts) on the device, from this process's cache, else the disk cache, else computed (and
        then written to both)."""
        key = self.text_features_key(texts)
        directory = model_dir(self.path)
        with _text_features_lock:
            features = _text_features.get(key)
        if features is None:
            features = read_text_features(key, directory)
            if features is None or tuple(features.shape[:1]) != (len(texts),):
                features = self.encode_texts(texts).cpu()
                written = write_text_features(key, directory, features)
                log.info("encoded %d texts for %s%s", len(texts), directory.name,
                         f"; cached at {written}" if written else "; no writable cache folder")
            with _text_features_lock:
                _text_features[key] = features
        return features.to(self.device)

    def encode_images(self, images: list[Image.Image]) -> Any:
        """Unit-length image features, the images transformed and encoded in one pass."""
        import torch

        model = self.require_loaded()
        pixels = torch.stack([self.preprocess(image) for image in images]).to(self.device, dtype=self.dtype)
        features = model.encode_image(pixels).float()
        return features / features.norm(dim=-1, keepdim=True)
