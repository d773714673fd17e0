"""The small face every model wrapper shares: what it is given and how it fails."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image


class InferenceSkipped(Exception):
    """Raised by infer() when the model has nothing to do for this input (e.g. no frames)."""


def clamp_box(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """Round a pixel box inward to the image, always at least one pixel wide and high."""
    x1, y1, x2, y2 = box
    left = min(max(int(x1), 0), width - 1)
    top = min(max(int(y1), 0), height - 1)
    right = max(min(int(round(x2)), width), left + 1)
    bottom = max(min(int(round(y2)), height), top + 1)
    return left, top, right, bottom


@dataclass
class ModelInput:
    """One detection as a model sees it: the decoded frame, its boxes, optional frame buffer."""

    frame: Image.Image
    bbox: tuple[float, float, float, float]
    detection_type: str = "person"
    face_bbox: tuple[float, float, float, float] | None = None
    frames: list[Image.Image] = field(default_factory=list)

    def person_crop(self) -> Image.Image:
        """The detection's box cut from the frame (named for persons, used for any object)."""
        return self.frame.crop(clamp_box(self.bbox, *self.frame.size))

    def face_crop(self) -> Image.Image:
        """The face box when given, else the top quarter of the detection box."""
        if self.face_bbox is not None:
            return self.frame.crop(clamp_box(self.face_bbox, *self.frame.size))
        x1, y1, x2, y2 = self.bbox
        return self.frame.crop(clamp_box((x1, y1, x2, y1 + (y2 - y1) / 4), *self.frame.size))


class ModelWrapper(Protocol):
    """What workers/registry.py expects of each model family's class.

    The constructor takes (path, device) and must not touch the GPU; load() does.
    infer() returns a JSON-serialisable dict, or raises ModelSkipped with a reason.
    A family that can run several detections in one forward pass also has
    infer_batch(list[ModelInput]) -> list[dict] (workers/batching.py uses it when present); such
    families define infer(x) as infer_batch([x])[0], so each has one code path.
    """

    def __init__(self, path: str, device: str) -> None: ...
    def load(self) -> None: ...
    def unload(self) -> None: ...
    def infer(self, inputs: ModelInput) -> dict: ...
