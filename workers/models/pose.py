"""YOLOv8-pose wrapper: the detected person's COCO-17 keypoints in frame pixels, and their posture."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from workers.models.base import ModelInput
from workers.models.posture import classify_posture
from workers.models.yolo_common import find_checkpoint, load_yolo, padded_crop, predict, release, write_checkpoint

PERSON_CONFIDENCE = float(os.environ.get("POSE_CONFIDENCE", "0.25"))  # ultralytics' default detection threshold
CHECKPOINT_NAME = "yolov8n-pose.pt"
CONFIG = "yolov8n-pose.yaml"  # shipped with ultralytics; the tiny and full-size models are both yolov8n

Box = Sequence[float]


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def best_overlap(target: Box, boxes: Sequence[Box]) -> int | None:
    """Index of the box that overlaps target most, or None when none overlaps it at all."""
    scores = [box_iou(target, box) for box in boxes]
    if not scores or max(scores) <= 0.0:
        return None
    return scores.index(max(scores))


def pose_result(event_box: Box, boxes: Sequence[Box], keypoints: Sequence[Sequence[Sequence[float]]]) -> dict:
    """The contract from all detected persons (frame pixels): the event's person's keypoints and posture.

    With no person overlapping the event box, posture is "unknown" and keypoints is empty.
    """
    chosen = best_overlap(event_box, boxes)
    if chosen is None:
        return {"posture": "unknown", "posture_confidence": 0.0, "keypoints": [], "persons_detected": len(boxes)}
    points = [[round(float(v), 4) for v in point] for point in keypoints[chosen]]
    posture, confidence = classify_posture(points)
    return {
        "posture": posture,
        "posture_confidence": confidence,
        "keypoints": points,
        "persons_detected": len(boxes),
    }


class PoseModel:
    """Keypoints and posture for the person in a detection box (ultralytics YOLOv8n-pose).

    The model runs on the box plus a margin; results are mapped back to full-frame pixels.
    infer() after unload() raises RuntimeError: the model cache is expected to load() again.
    """

    def __init__(self, path: str, device: str) -> None:
        self.path = path
        self.device = device
        self.confidence = PERSON_CONFIDENCE
        self._model = None

    def load(self) -> None:
        self._model = load_yolo(self.path, self.device)
        if self._model.task != "pose":
            task = self._model.task
            self._model = None
            raise ValueError(f"{find_checkpoint(self.path)} is a {task!r} model, not a pose model")

    def unload(self) -> None:
        self._model = None
        release(self.device)

    def infer(self, inputs: ModelInput) -> dict:
        return self.infer_batch([inputs])[0]

    def infer_batch(self, batch: list[ModelInput]) -> list[dict]:
        """Pose for each detection; the padded crops go through the model in one call."""
        if self._model is None:
            raise RuntimeError("pose model is not loaded; call load() first")
        crops = [padded_crop(inputs) for inputs in batch]
        results = predict(self._model, [crop for crop, _ in crops], self.device, self.confidence)
        answers = []
        for inputs, (_, (dx, dy)), result in zip(batch, crops, results):
            boxes = [[x1 + dx, y1 + dy, x2 + dx, y2 + dy] for x1, y1, x2, y2 in result.boxes.xyxy.tolist()]
            keypoints = [[[x + dx, y + dy, c] for x, y, c in person] for person in _keypoint_triples(result)]
            answers.append(pose_result(inputs.bbox, boxes, keypoints))
        return answers


def _keypoint_triples(result) -> list[list[list[float]]]:
    """Per person 17 x [x, y, confidence] (confidence 1.0 where the model gives none)."""
    if result.keypoints is None:
        return []
    data = result.keypoints.data.tolist()
    return [[point if len(point) == 3 else [point[0], point[1], 1.0] for point in person] for person in data]


def write_tiny(dest: Path, full_size: bool = False) -> None:
    """Write a randomly initialised YOLOv8n-pose checkpoint (the real architecture is already small)."""
    write_checkpoint(Path(dest) / CHECKPOINT_NAME, CONFIG, {0: "person"})
