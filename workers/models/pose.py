"""YOLOv8-pose: COCO-17 keypoints in frame pixels and the posture of each person in the detection box."""

from __future__ import annotations

from collections.abc import Sequence

from workers.models.base import ModelInput
from workers.models.posture import describe_posture
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


def overlapping(target: Box, boxes: Sequence[Box]) -> list[int]:
    """Indices of the boxes that overlap target at all, the most overlapping first (ties in the model's order)."""
    scores = [box_iou(target, box) for box in boxes]
    return sorted((i for i, score in enumerate(scores) if score > 0.0), key=lambda i: -scores[i])


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(float(v), 4) for v in values]


def pose_result(event_box: Box, boxes: Sequence[Box], keypoints: Sequence[Sequence[Sequence[float]]]) -> dict:
    """The seed's pose shape from all detected persons (frame pixels), with the event's person's fields beside.

    `poses` lists every person whose box overlaps the event box, the event's person (most overlap) first,
    each with its posture, the posture's confidence, whether it is suspicious at a door, its keypoints
    and its box. The single-person fields describe poses[0]; with nobody overlapping the event box,
    `poses` is empty, posture is "unknown" and keypoints is empty.
    """
    poses = []
    for i in overlapping(event_box, boxes):
        points = [_rounded(point) for point in keypoints[i]]
        poses.append({**describe_posture(points), "keypoints": points, "bbox": _rounded(boxes[i])})
    if not poses:
        return {"poses": [], "posture": "unknown", "posture_confidence": 0.0, "keypoints": [],
                "persons_detected": len(boxes)}
    subject = poses[0]
    return {
        "poses": poses,
        "posture": subject["posture"],
        "posture_confidence": subject["confidence"],
        "keypoints": subject["keypoints"],
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
