"""The ultralytics kind of family (pose, threat): offline loading, padded crops, one batched predict, frame pixels.

On a GPU the network runs in float16 (converted once at load; predict is told so, or it would convert back).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from workers.models.base import ModelFamily, ModelInput, clamp_box, find_weights_file, found_file
from workers.settings import ZooSettings

WARM_UP_IMAGE_SIZE = (64, 64)  # a blank image predicted once at worker start, on the CPU, to import the predictor

CHECKPOINT_SUFFIX = ".pt"
PREFERRED_NAMES = ("best.pt", "model.pt")  # what fine-tuned hub repos usually call their one checkpoint
CROP_PADDING = 0.15  # fraction of the box size added on each side, so limbs and held objects stay in view

# What each ultralytics task is called when a checkpoint of another task is refused.
TASK_NAMES = {"detect": "a detector", "pose": "a pose model"}


def offline_settings() -> None:
    """Keep ultralytics from reaching for the network (hub checks, telemetry, asset downloads).

    These are ultralytics' own switches, read by that library when it is imported: configuring a library,
    not a setting of the pool (those come in through ZooSettings).
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")


def find_checkpoint(path: str | Path) -> Path:
    """The .pt file at path: the file itself, or the one checkpoint in a directory (top level first)."""
    return find_weights_file(path, (CHECKPOINT_SUFFIX,), "YOLO checkpoint", preferred=PREFERRED_NAMES, nested=True)


def padded_crop(inputs: ModelInput, padding: float = CROP_PADDING) -> tuple[Image.Image, tuple[int, int]]:
    """The detection box grown by padding on each side, cut from the frame, and its top-left offset."""
    x1, y1, x2, y2 = inputs.bbox
    pad_x, pad_y = (x2 - x1) * padding, (y2 - y1) * padding
    left, top, right, bottom = clamp_box((x1 - pad_x, y1 - pad_y, x2 + pad_x, y2 + pad_y), *inputs.frame.size)
    return inputs.frame.crop((left, top, right, bottom)), (left, top)


@dataclass
class FrameDetections:
    """What the model found around one detection, in full-frame pixels, in the model's order."""

    boxes: list[list[float]]  # x1, y1, x2, y2
    confidences: list[float]
    labels: list[str]  # the checkpoint's own class names
    keypoints: list[list[list[float]]]  # per box 17 x [x, y, confidence]; empty for a detector


def _keypoint_triples(result: Any) -> list[list[list[float]]]:
    """Per person 17 x [x, y, confidence] (confidence 1.0 where the model gives none)."""
    if result.keypoints is None:
        return []
    data = result.keypoints.data.tolist()
    return [[point if len(point) == 3 else [point[0], point[1], 1.0] for point in person] for person in data]


def frame_detections(result: Any, offset: tuple[int, int]) -> FrameDetections:
    """One ultralytics Results for a crop, moved by the crop's offset into frame pixels."""
    dx, dy = offset
    return FrameDetections(
        boxes=[[x1 + dx, y1 + dy, x2 + dx, y2 + dy] for x1, y1, x2, y2 in result.boxes.xyxy.tolist()],
        confidences=result.boxes.conf.tolist(),
        labels=[result.names[int(cls)] for cls in result.boxes.cls.tolist()],
        keypoints=[[[x + dx, y + dy, c] for x, y, c in person] for person in _keypoint_triples(result)],
    )


class UltralyticsFamily(ModelFamily):
    """An ultralytics YOLO checkpoint of one task, run on each detection's box plus a margin.

    A family names its `task` and the ZooSettings field of its confidence threshold, and turns each
    FrameDetections into its answer.
    """

    batchable = True
    task: ClassVar[str]
    confidence_setting: ClassVar[str]  # e.g. "threat_confidence"
    stored_bytes_per_float = 2  # ultralytics saves its checkpoints in float16

    def __init__(self, path: str | Path, device: str, zoo: ZooSettings | None = None) -> None:
        super().__init__(path, device, zoo)
        self.confidence: float = getattr(self.zoo, self.confidence_setting)

    half_on_cuda = True

    @classmethod
    def weight_files(cls, path: Path) -> list[Path]:
        return found_file(find_checkpoint, path)

    @classmethod
    def import_libraries(cls, path: Path) -> None:
        """ultralytics, and its predictor: the checkpoint predicts a blank image once on the CPU, then is dropped
        (the first predict in a process imports and sets up more than the load does)."""
        offline_settings()
        from ultralytics import YOLO

        YOLO(str(find_checkpoint(path))).predict(Image.new("RGB", WARM_UP_IMAGE_SIZE), device="cpu", verbose=False)

    def _load(self) -> None:
        offline_settings()
        from ultralytics import YOLO

        checkpoint = find_checkpoint(self.path)
        model = YOLO(str(checkpoint))
        if model.task != self.task:
            raise ValueError(f"{checkpoint} is a {model.task!r} model, not {TASK_NAMES.get(self.task, self.task)}")
        model.to(self.device)
        if self.runs_in_half(self.device):
            model.model.half()
        self.model = model

    def detect(self, batch: list[ModelInput]) -> list[FrameDetections]:
        """Each detection's padded crop through the model in one call, keeping what scores at least confidence.

        Nothing is saved, printed or plotted. ultralytics refuses conf above 1, so a threshold above 1
        (report nothing) is applied here rather than passed through.
        """
        model = self.require_loaded()
        crops = [padded_crop(inputs) for inputs in batch]
        results = model.predict(
            [crop for crop, _ in crops], device=self.device, conf=min(self.confidence, 1.0), verbose=False, save=False,
            half=self.runs_in_half(self.device),
        )
        return [
            frame_detections(result[result.boxes.conf >= self.confidence], offset)
            for (_, offset), result in zip(crops, results)
        ]
