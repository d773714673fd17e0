"""Depth Anything V2 proximity: how near the detected object is, relative to the rest of the frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from workers.models.base import ModelInput, clamp_box

# Proximity classes by relative depth (0 = nearest point in the frame, 1 = farthest), as upper bounds:
# the first row whose bound the value is below names it. Values at or above the last bound are "far".
PROXIMITY_CLASSES: tuple[tuple[float, str], ...] = (
    (0.20, "very_close"),
    (0.40, "close"),
    (0.65, "medium"),
)
FARTHEST_CLASS = "far"

# A frame with no depth contrast at all (a flat prediction) says nothing about distance: call it mid-range.
FLAT_FRAME_DEPTH = 0.5


def proximity_class(relative_depth: float) -> str:
    """Name the proximity band of a relative depth in [0, 1]."""
    for upper_bound, name in PROXIMITY_CLASSES:
        if relative_depth < upper_bound:
            return name
    return FARTHEST_CLASS


def relative_depth_map(inverse_depth: np.ndarray) -> np.ndarray:
    """Min-max normalise a relative inverse-depth map (larger = nearer) to 0 = nearest .. 1 = farthest."""
    inverse_depth = np.asarray(inverse_depth, dtype=np.float64)
    nearest, farthest = float(inverse_depth.max()), float(inverse_depth.min())
    if nearest - farthest <= 1e-12 or not np.isfinite(nearest - farthest):
        return np.full(inverse_depth.shape, FLAT_FRAME_DEPTH)
    return (nearest - inverse_depth) / (nearest - farthest)


def box_relative_depth(depth_map: np.ndarray, bbox: tuple[float, float, float, float]) -> float:
    """Median relative depth inside a pixel box (clamped to the map, at least one pixel)."""
    height, width = depth_map.shape
    x1, y1, x2, y2 = clamp_box(bbox, width, height)
    return float(np.median(depth_map[y1:y2, x1:x2]))


class DepthModel:
    """Depth Anything (transformers) run on the full frame; reports the detection box's depth."""

    def __init__(self, path: str, device: str) -> None:
        self.path = path
        self.device = device
        self.model: Any = None
        self.image_processor: Any = None

    def load(self) -> None:
        import torch
        from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation

        dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.image_processor = AutoImageProcessor.from_pretrained(self.path)
        self.model = DepthAnythingForDepthEstimation.from_pretrained(self.path, dtype=dtype)
        self.model.to(self.device).eval()

    def unload(self) -> None:
        self.model = None
        self.image_processor = None

    def depth_map(self, image: Image.Image) -> np.ndarray:
        """Relative depth (0 near .. 1 far) for every pixel of the image, at the image's size."""
        import torch

        if self.model is None:
            raise RuntimeError("DepthModel.depth_map called before load()")
        image = image.convert("RGB")
        inputs = self.image_processor(images=image, return_tensors="pt")
        with torch.inference_mode():
            outputs = self.model(pixel_values=inputs["pixel_values"].to(self.device, self.model.dtype))
        outputs.predicted_depth = outputs.predicted_depth.float()
        resized = self.image_processor.post_process_depth_estimation(outputs, target_sizes=[(image.height, image.width)])
        inverse_depth = resized[0]["predicted_depth"].reshape(image.height, image.width).cpu().numpy()
        return relative_depth_map(inverse_depth)

    def estimate_object_distance(self, image: Image.Image, bbox: tuple[float, float, float, float]) -> dict:
        """Relative depth of the box (median over its pixels) and its proximity class."""
        relative_depth = box_relative_depth(self.depth_map(image), bbox)
        return {"relative_depth": round(relative_depth, 4), "proximity": proximity_class(relative_depth)}

    def infer(self, inputs: ModelInput) -> dict:
        return self.estimate_object_distance(inputs.frame, inputs.bbox)


# --- random-weight models in the on-disk format load() reads ---------------------------------------

# depth-anything/Depth-Anything-V2-Small-hf, for --full-size.
FULL_SIZE = {
    "image_size": 518,
    "backbone": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "intermediate_size": 1536,
                 "out_indices": [3, 6, 9, 12]},
    "head": {"reassemble_hidden_size": 384, "neck_hidden_sizes": [48, 96, 192, 384], "fusion_hidden_size": 64,
             "head_hidden_size": 32},
}
TINY = {
    "image_size": 56,
    "backbone": {"hidden_size": 16, "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 32,
                 "out_indices": [1, 2, 3, 4]},
    "head": {"reassemble_hidden_size": 16, "neck_hidden_sizes": [8, 8, 16, 16], "fusion_hidden_size": 8,
             "head_hidden_size": 8},
}


def write_tiny(dest: Path, full_size: bool = False) -> None:
    """Write a random-weight Depth Anything directory (Dinov2 backbone + DPT head) with its image processor."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, DPTImageProcessor

    shape = FULL_SIZE if full_size else TINY
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    side = shape["image_size"]
    backbone = {
        "model_type": "dinov2", "image_size": side, "patch_size": 14, "reshape_hidden_states": False,
        **shape["backbone"],
    }
    config = DepthAnythingConfig(backbone_config=backbone, patch_size=14, **shape["head"])
    DepthAnythingForDepthEstimation(config).eval().save_pretrained(dest)
    DPTImageProcessor(
        do_resize=True, size={"height": side, "width": side}, keep_aspect_ratio=True, ensure_multiple_of=14,
        resample=3, do_rescale=True, do_normalize=True, image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225], do_pad=False,
    ).save_pretrained(dest)
