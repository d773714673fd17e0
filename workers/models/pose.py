"""YOLOv8-pose: the detected person's COCO-17 keypoints in frame pixels, and their posture."""

from __future__ import annotations

from typing import Sequence

from workers.models.base import ModelInput
from workers.models.posture import classify_posture
from workers.models.yolo_family import UltralyticsFamily

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


class PoseModel(UltralyticsFamily):
    """Keypoints and posture for the person in a detection box (ultralytics YOLOv8n-pose).

    Persons the model scores below the zoo's pose_confidence (POSE_CONFIDENCE, ultralytics' default 0.25) are ignored.
    """

    task = "pose"
    confidence_setting = "pose_confidence"

    def infer_batch(self, batch: list[ModelInput]) -> list[dict]:
        """Pose for each detection; the padded crops go through the model in one call."""
        return [
            pose_result(inputs.bbox, found.boxes, found.keypoints)
            for inputs, found in zip(batch, self.detect(batch))
        ]
