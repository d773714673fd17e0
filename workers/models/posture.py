"""Body posture from COCO-17 keypoints: pure rules (crouching to standing), and which postures are suspicious."""

from __future__ import annotations

import math
from collections.abc import Sequence

from prompt_formatting.vocabulary import SUSPICIOUS_POSTURES

KEYPOINT_CONFIDENCE = 0.3  # keypoints below this are treated as not seen
CROUCH_RATIO = 0.5  # hip-to-ankle distance under half the shoulder-to-hip distance: crouching
BEND_DEGREES = 45.0  # torso leaning further than this from vertical: bending over
HORIZONTAL_DEGREES = 60.0  # torso this far from vertical, body wider than tall: on the ground (lying or crawling)
CRAWL_DROP_RATIO = 0.4  # on all fours: a wrist below the shoulders and a knee below the hips by this many torsos
RUN_STRIDE_RATIO = 1.6  # ankles this many torso lengths apart horizontally...
RUN_LEAN_DEGREES = 10.0  # ...with the torso leaning at least this far (and under BEND_DEGREES): running

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
INDEX = {name: i for i, name in enumerate(COCO_KEYPOINTS)}
SHOULDERS = (INDEX["left_shoulder"], INDEX["right_shoulder"])
HIPS = (INDEX["left_hip"], INDEX["right_hip"])
KNEES = (INDEX["left_knee"], INDEX["right_knee"])
ANKLES = (INDEX["left_ankle"], INDEX["right_ankle"])
WRISTS = (INDEX["left_wrist"], INDEX["right_wrist"])

POSTURES = (
    "crouching", "crawling", "lying_down", "bending_over", "running", "arms_raised", "standing", "unknown",
)
Keypoints = Sequence[Sequence[float]]  # 17 x (x, y, confidence), image pixels, y grows downward

__all__ = [
    "COCO_KEYPOINTS", "INDEX", "KEYPOINT_CONFIDENCE", "POSTURES", "SUSPICIOUS_POSTURES",
    "classify_posture", "describe_posture",
]


def _seen(keypoints: Keypoints, indices: Sequence[int], min_confidence: float) -> list[Sequence[float]]:
    return [keypoints[i] for i in indices if keypoints[i][2] >= min_confidence]


def _midpoint(points: list[Sequence[float]]) -> tuple[float, float] | None:
    """Centre of the seen points of a left/right pair (one side alone stands in for both)."""
    if not points:
        return None
    return sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)


def _mean_confidence(points: list[Sequence[float]]) -> float:
    return round(sum(p[2] for p in points) / len(points), 4)


def _wider_than_tall(points: list[Sequence[float]]) -> bool:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return max(xs) - min(xs) > max(ys) - min(ys)


def classify_posture(keypoints: Keypoints, min_confidence: float = KEYPOINT_CONFIDENCE) -> tuple[str, float]:
    """(posture, confidence) for one person; confidence is the mean score of the keypoints the rule used.

    Rules, first match wins (torso = shoulder midpoint to hip midpoint, lean = its angle from vertical):
    - crouching: hips nearer the ankles than half a torso;
    - on the ground (lean >= 60 degrees, a knee or ankle seen, all seen keypoints wider than tall):
      crawling when a wrist hangs below the shoulders and a knee below the hips by 0.4 torso or more
      (body held up on hands and knees), else lying_down;
    - bending_over: lean > 45 degrees;
    - running: both ankles seen 1.6 torso lengths or more apart horizontally, with a lean of 10 degrees
      or more (a long stride and a forward lean; one frame cannot tell a fast walk for sure);
    - arms_raised: a wrist above the shoulders;
    - standing: ankles seen below an upright torso.
    Only keypoints at or above min_confidence count; when the ones a rule needs are missing, the answer
    is "unknown".
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
    knee_points = _seen(keypoints, KNEES, min_confidence)
    wrist_points = _seen(keypoints, WRISTS, min_confidence)
    leg_points = knee_points + ankle_points
    seen = [keypoints[i] for i in range(len(COCO_KEYPOINTS)) if keypoints[i][2] >= min_confidence]
    if lean >= HORIZONTAL_DEGREES and leg_points and _wider_than_tall(seen):
        drop = torso * CRAWL_DROP_RATIO
        hands_down = [w for w in wrist_points if w[1] - shoulders[1] >= drop]
        knees_down = [k for k in knee_points if k[1] - hips[1] >= drop]
        if hands_down and knees_down:
            return "crawling", _mean_confidence(torso_points + hands_down + knees_down)
        return "lying_down", _mean_confidence(torso_points + leg_points)

    if lean > BEND_DEGREES:
        return "bending_over", _mean_confidence(torso_points)

    if len(ankle_points) == 2 and lean >= RUN_LEAN_DEGREES:
        stride = abs(ankle_points[0][0] - ankle_points[1][0])
        if stride >= torso * RUN_STRIDE_RATIO:
            return "running", _mean_confidence(torso_points + ankle_points)

    raised = [w for w in wrist_points if w[1] < shoulders[1]]
    if raised:
        return "arms_raised", _mean_confidence(torso_points + raised)

    if ankles is not None:
        return "standing", _mean_confidence(torso_points + ankle_points)
    return "unknown", 0.0


def describe_posture(keypoints: Keypoints, min_confidence: float = KEYPOINT_CONFIDENCE) -> dict:
    """{"posture", "confidence", "suspicious"}: the posture with whether it matters at a door (SUSPICIOUS_POSTURES)."""
    posture, confidence = classify_posture(keypoints, min_confidence)
    return {"posture": posture, "confidence": confidence, "suspicious": posture in SUSPICIOUS_POSTURES}
