"""Body posture from COCO-17 keypoints: pure rules (crouching, bending over, arms raised, standing)."""

from __future__ import annotations

import math
from typing import Sequence

KEYPOINT_CONFIDENCE = 0.3  # keypoints below this are treated as not seen
CROUCH_RATIO = 0.5  # hip-to-ankle distance under half the shoulder-to-hip distance: crouching
BEND_DEGREES = 45.0  # torso leaning further than this from vertical: bending over

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
INDEX = {name: i for i, name in enumerate(COCO_KEYPOINTS)}
SHOULDERS = (INDEX["left_shoulder"], INDEX["right_shoulder"])
HIPS = (INDEX["left_hip"], INDEX["right_hip"])
ANKLES = (INDEX["left_ankle"], INDEX["right_ankle"])
WRISTS = (INDEX["left_wrist"], INDEX["right_wrist"])

POSTURES = ("crouching", "bending_over", "arms_raised", "standing", "unknown")
Keypoints = Sequence[Sequence[float]]  # 17 x (x, y, confidence), image pixels, y grows downward


def _seen(keypoints: Keypoints, indices: Sequence[int], min_confidence: float) -> list[Sequence[float]]:
    return [keypoints[i] for i in indices if keypoints[i][2] >= min_confidence]


def _midpoint(points: list[Sequence[float]]) -> tuple[float, float] | None:
    """Centre of the seen points of a left/right pair (one side alone stands in for both)."""
    if not points:
        return None
    return sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)


def _mean_confidence(points: list[Sequence[float]]) -> float:
    return round(sum(p[2] for p in points) / len(points), 4)


def classify_posture(keypoints: Keypoints, min_confidence: float = KEYPOINT_CONFIDENCE) -> tuple[str, float]:
    """(posture, confidence) for one person; confidence is the mean score of the keypoints the rule used.

    Rules, first match wins: crouching (hips near ankles), bending_over (torso > 45 degrees from
    vertical), arms_raised (a wrist above the shoulders), standing. Only keypoints at or above
    min_confidence count; when the ones a rule needs are missing, the answer is "unknown".
    """
    if len(keypoints) != len(COCO_KEYPOINTS):
        return "unknown", 0.0
    shoulder_points = _seen(keypoints, SHOULDERS, min_confidence)
    hip_points = _seen(keypoints, HIPS, min_confidence)
    shoulders, hips = _midpoint(shoulder_points), _midpoint(hip_points)
    if shoulders is None or hips is None:
        return "unknown", 0.0
    torso = math.dist(shoulders, hips)
    if torso == 0.0:
        return "unknown", 0.0
    torso_points = shoulder_points + hip_points

    ankle_points = _seen(keypoints, ANKLES, min_confidence)
    ankles = _midpoint(ankle_points)
    if ankles is not None and math.dist(hips, ankles) < torso * CROUCH_RATIO:
        return "crouching", _mean_confidence(torso_points + ankle_points)

    lean = math.degrees(math.atan2(abs(hips[0] - shoulders[0]), hips[1] - shoulders[1]))
    if lean > BEND_DEGREES:
        return "bending_over", _mean_confidence(torso_points)

    raised = [w for w in _seen(keypoints, WRISTS, min_confidence) if w[1] < shoulders[1]]
    if raised:
        return "arms_raised", _mean_confidence(torso_points + raised)

    if ankles is not None:
        return "standing", _mean_confidence(torso_points + ankle_points)
    return "unknown", 0.0
