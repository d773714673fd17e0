"""Depth Anything V2 proximity: how near the detected object is, relative to the rest of the frame."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from prompt_formatting import approximate_distance_m
from workers.finishing import Finishing
from workers.models.base import ModelInput, clamp_box
from workers.models.hf_family import HuggingFaceFamily

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


class DepthModel(HuggingFaceFamily):
    """Depth Anything (transformers) run on the full frame; reports the detection box's depth."""

    processor_class = "AutoImageProcessor"
    model_class = "DepthAnythingForDepthEstimation"
    half_on_cuda = True

    def depth_map(self, image: Image.Image) -> np.ndarray:
        """Relative depth (0 near .. 1 far) for every pixel of the image, at the image's size."""
        outputs = self.forward_images([image])
        outputs.predicted_depth = outputs.predicted_depth.float()
        resized = self.processor.post_process_depth_estimation(outputs, target_sizes=[(image.height, image.width)])
        inverse_depth = resized[0]["predicted_depth"].reshape(image.height, image.width).cpu().numpy()
        return relative_depth_map(inverse_depth)

    def infer(self, inputs: ModelInput) -> dict:
        """Relative depth of the box (median over its pixels) and its proximity class."""
        relative_depth = box_relative_depth(self.depth_map(inputs.frame), inputs.bbox)
        return {"relative_depth": round(relative_depth, 4), "proximity": proximity_class(relative_depth)}


def add_distance(enrichment: dict[str, Any], finishing: Finishing) -> None:
    """Approximate metres (0.1 m) beside the depth section's relative depth, in the camera's calibrated range."""
    section = enrichment.get("depth")
    relative = section.get("relative_depth") if isinstance(section, dict) else None
    if isinstance(relative, bool) or not isinstance(relative, (int, float)) or not math.isfinite(relative):
        return
    near_m, far_m = finishing.depth.range_m(finishing.camera_id)
    section["distance_m"] = round(approximate_distance_m(relative, near_m, far_m), 1)
