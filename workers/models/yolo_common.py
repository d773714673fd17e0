"""Ultralytics YOLO checkpoints shared by the pose and threat wrappers: find, load offline, run on a crop, write."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PIL import Image

from workers.models.base import ModelInput, clamp_box

CHECKPOINT_SUFFIX = ".pt"
PREFERRED_NAMES = ("best.pt", "model.pt")  # what fine-tuned hub repos usually call their one checkpoint
CROP_PADDING = 0.15  # fraction of the box size added on each side, so limbs and held objects stay in view


def offline_settings() -> None:
    """Keep ultralytics from reaching for the network (hub checks, telemetry, asset downloads)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")


def find_checkpoint(path: str | Path) -> Path:
    """The .pt file at path: the file itself, or the one checkpoint in a directory (top level first)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"no YOLO checkpoint at {path}")
    candidates = sorted(path.glob(f"*{CHECKPOINT_SUFFIX}")) or sorted(path.rglob(f"*{CHECKPOINT_SUFFIX}"))
    if len(candidates) == 1:
        return candidates[0]
    for name in PREFERRED_NAMES:
        preferred = [c for c in candidates if c.name == name]
        if len(preferred) == 1:
            return preferred[0]
    found = ", ".join(str(c.relative_to(path)) for c in candidates) or "none"
    raise FileNotFoundError(f"expected one {CHECKPOINT_SUFFIX} checkpoint in {path}, found: {found}")


def load_yolo(path: str | Path, device: str) -> Any:
    """An ultralytics YOLO model from a local checkpoint, moved to device."""
    offline_settings()
    from ultralytics import YOLO

    model = YOLO(str(find_checkpoint(path)))
    model.to(device)
    return model


def padded_crop(inputs: ModelInput, padding: float = CROP_PADDING) -> tuple[Image.Image, tuple[int, int]]:
    """The detection box grown by padding on each side, cut from the frame, and its top-left offset."""
    x1, y1, x2, y2 = inputs.bbox
    pad_x, pad_y = (x2 - x1) * padding, (y2 - y1) * padding
    left, top, right, bottom = clamp_box((x1 - pad_x, y1 - pad_y, x2 + pad_x, y2 + pad_y), *inputs.frame.size)
    return inputs.frame.crop((left, top, right, bottom)), (left, top)


def predict(model: Any, images: list[Image.Image], device: str, confidence: float) -> list[Any]:
    """One ultralytics Results per image (one batched call), only detections scoring at least confidence.

    Nothing is saved, printed or plotted. ultralytics refuses conf above 1, so a threshold above 1
    (report nothing) is applied here rather than passed through.
    """
    results = model.predict(images, device=device, conf=min(confidence, 1.0), verbose=False, save=False)
    return [result[result.boxes.conf >= confidence] for result in results]


def release(device: str) -> None:
    """Return cached GPU memory after a model has been dropped."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def write_checkpoint(dest_file: Path, config: str, names: dict[int, str]) -> None:
    """Build a randomly initialised model from an ultralytics YAML config and save it as a loadable .pt."""
    offline_settings()
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load

    torch.manual_seed(0)
    yolo = YOLO(config)
    cfg = yaml_model_load(config)
    if cfg["nc"] != len(names):
        yolo.model = type(yolo.model)(cfg, nc=len(names), verbose=False)
    yolo.model.names = dict(names)
    dest_file.parent.mkdir(parents=True, exist_ok=True)
    yolo.save(str(dest_file))
