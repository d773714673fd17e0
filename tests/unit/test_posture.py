"""Posture rules on hand-made COCO-17 keypoints; unseen keypoints never decide a posture."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from workers.models.posture import COCO_KEYPOINTS, INDEX, KEYPOINT_CONFIDENCE, POSTURES, classify_posture

UPRIGHT = {
    "nose": (120, 70), "left_shoulder": (100, 100), "right_shoulder": (140, 100),
    "left_elbow": (95, 150), "right_elbow": (145, 150), "left_wrist": (95, 200), "right_wrist": (145, 200),
    "left_hip": (105, 200), "right_hip": (135, 200), "left_knee": (105, 290), "right_knee": (135, 290),
    "left_ankle": (105, 380), "right_ankle": (135, 380),
}


def skeleton(points: dict[str, tuple[float, float]], confidence: float = 0.9, **changes) -> list[list[float]]:
    """17 keypoints: the named ones seen at confidence, the rest unseen (confidence 0)."""
    merged = {**points, **changes}
    return [
        [*merged[name], confidence] if merged.get(name) is not None else [0.0, 0.0, 0.0] for name in COCO_KEYPOINTS
    ]


def test_upright_person_with_arms_down_is_standing():
    assert classify_posture(skeleton(UPRIGHT)) == ("standing", 0.9)


def test_hips_near_ankles_is_crouching():
    assert classify_posture(skeleton(UPRIGHT, left_ankle=(105, 230), right_ankle=(135, 230)))[0] == "crouching"


def test_torso_leaning_past_45_degrees_is_bending_over():
    bent = skeleton(UPRIGHT, left_shoulder=(220, 170), right_shoulder=(230, 175))
    assert classify_posture(bent)[0] == "bending_over"


def test_slight_lean_is_not_bending_over():
    leaning = skeleton(UPRIGHT, left_shoulder=(130, 100), right_shoulder=(170, 100))  # about 17 degrees
    assert classify_posture(leaning)[0] == "standing"


def test_one_wrist_above_the_shoulders_is_arms_raised():
    assert classify_posture(skeleton(UPRIGHT, right_wrist=(150, 40)))[0] == "arms_raised"


def test_arms_raised_needs_no_ankles():
    assert classify_posture(skeleton(UPRIGHT, left_ankle=None, right_ankle=None, left_wrist=(90, 50)))[0] == (
        "arms_raised"
    )


def test_standing_needs_the_ankles_seen():
    assert classify_posture(skeleton(UPRIGHT, left_ankle=None, right_ankle=None)) == ("unknown", 0.0)


def test_missing_torso_is_unknown():
    assert classify_posture(skeleton(UPRIGHT, left_hip=None, right_hip=None)) == ("unknown", 0.0)
    assert classify_posture(skeleton(UPRIGHT, left_shoulder=None, right_shoulder=None)) == ("unknown", 0.0)


def test_one_side_of_a_pair_is_enough():
    side_view = skeleton(UPRIGHT, right_shoulder=None, right_hip=None, right_ankle=None)
    assert classify_posture(side_view)[0] == "standing"


def test_low_confidence_wrist_above_head_is_ignored():
    keypoints = skeleton(UPRIGHT)
    keypoints[INDEX["left_wrist"]] = [95.0, 10.0, KEYPOINT_CONFIDENCE - 0.01]
    assert classify_posture(keypoints)[0] == "standing"


def test_confidence_is_mean_of_the_keypoints_used():
    keypoints = skeleton(UPRIGHT)
    keypoints[INDEX["left_ankle"]][2] = 0.5  # used by the standing rule
    keypoints[INDEX["nose"]][2] = 0.31  # not used
    posture, confidence = classify_posture(keypoints)
    assert posture == "standing"
    assert confidence == round((0.9 * 5 + 0.5) / 6, 4)


def test_wrong_number_of_keypoints_is_unknown():
    assert classify_posture(skeleton(UPRIGHT)[:16]) == ("unknown", 0.0)


coordinate = st.floats(-2000, 2000, allow_nan=False)
low_confidence = st.floats(0.0, KEYPOINT_CONFIDENCE, exclude_max=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(coordinate, coordinate, low_confidence), min_size=17, max_size=17))
def test_all_low_confidence_keypoints_always_give_unknown(keypoints):
    assert classify_posture([list(k) for k in keypoints]) == ("unknown", 0.0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.booleans(), min_size=17, max_size=17),
    st.lists(st.tuples(coordinate, coordinate, low_confidence), min_size=17, max_size=17),
)
def test_unseen_keypoints_never_change_the_posture(hidden, noise):
    """Whatever an unseen keypoint's coordinates, the answer is the one given without it."""
    base = skeleton(UPRIGHT, right_wrist=(150, 40))
    masked = [[0.0, 0.0, 0.0] if h else k for h, k in zip(hidden, base)]
    noisy = [list(n) if h else k for h, k, n in zip(hidden, base, noise)]
    assert classify_posture(noisy) == classify_posture(masked)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(coordinate, coordinate, st.floats(0.0, 1.0)), min_size=17, max_size=17))
def test_any_keypoints_give_a_known_label_and_a_bounded_confidence(keypoints):
    posture, confidence = classify_posture([list(k) for k in keypoints])
    assert posture in POSTURES
    assert confidence == 0.0 if posture == "unknown" else KEYPOINT_CONFIDENCE <= confidence <= 1.0
