"""Families that answer with fixed evidence, standing in where tiny random weights cannot see anything.

Swapped in for one model with <NAME>_MODEL_FAMILY=tests.stand_in_models:Class: the rest of the pool (routing,
the second round, assembly, the prompt) runs as it does with real weights.
"""

from __future__ import annotations

from workers.models.base import ModelFamily, ModelInput
from workers.models.pose import pose_result

# COCO-17 keypoints (x, y, confidence) of a crouching person in a unit box: hips low, knees bent to the ankles.
CROUCHING_UNIT = (
    (0.5, 0.1), (0.45, 0.08), (0.55, 0.08), (0.4, 0.1), (0.6, 0.1), (0.3, 0.3), (0.7, 0.3), (0.25, 0.5),
    (0.75, 0.5), (0.3, 0.65), (0.7, 0.65), (0.35, 0.75), (0.65, 0.75), (0.25, 0.7), (0.75, 0.7), (0.35, 0.88),
    (0.65, 0.88),
)


class _StandIn(ModelFamily):
    def _load(self) -> None:
        self.model = type(self).__name__


class CrouchingPoseModel(_StandIn):
    """Everyone in the detection box crouches."""

    def infer(self, inputs: ModelInput) -> dict:
        x1, y1, x2, y2 = inputs.bbox
        points = [[x1 + u * (x2 - x1), y1 + v * (y2 - y1), 0.9] for u, v in CROUCHING_UNIT]
        return pose_result(inputs.bbox, [inputs.bbox], [points])


class PlateReadingFlorenceModel(_StandIn):
    """Florence that reads one licence plate, "ABC-123", low in the middle of the detection box (tiny random
    Florence reads nothing)."""

    plate_text = "ABC-123"

    def infer(self, inputs: ModelInput) -> dict:
        x1, y1, x2, y2 = inputs.bbox
        cx, low = (x1 + x2) / 2.0, y1 + 0.85 * (y2 - y1)
        quad = [cx - 40, low - 12, cx + 40, low - 12, cx + 40, low + 12, cx - 40, low + 12]
        return {"scene": "A vehicle in a driveway.", "security_objects": {"labels": [], "bboxes": []},
                "text_regions": {"labels": [self.plate_text], "quad_boxes": [quad]}}
