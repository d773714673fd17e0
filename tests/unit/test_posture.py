"""Posture rules on hand-made COCO-17 keypoints; unseen keypoints never decide a posture."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.models.posture import (
    COCO_KEYPOINTS,
    INDEX,
    KEYPOINT_CONFIDENCE,
    POSTURES,
    SUSPICIOUS_POSTURES,
    classify_posture,
    describe_posture,
)

UPRIGHT = {
    "nose": (120, 70), "left_shoulder": (100, 100), "right_shoulder": (140, 100),
    "left_elbow": (95, 150), "right_elbow": (145, 150), "left_wrist": (95, 200), "right_wrist": (145, 200),
    "left_hip": (105, 200), "right_hip": (135, 200), "left_knee": (105, 290), "right_knee": (135, 290),
    "left_ankle": (105, 380), "right_ankle": (135, 380),
}

# Side view, mid-stride: torso leaning 15 degrees forward, ankles 1.8 torso lengths apart.
RUNNING = {
    "nose": (160, 70), "left_shoulder": (145, 103), "right_shoulder": (147, 104),
    "left_elbow": (120, 140), "right_elbow": (170, 130), "left_wrist": (100, 180), "right_wrist": (160, 150),
    "left_hip": (119, 200), "right_hip": (121, 200), "left_knee": (80, 290), "right_knee": (170, 285),
    "left_ankle": (40, 380), "right_ankle": (220, 370),
}
# Side view, flat on the ground: everything within a few pixels of one line.
LYING = {
    "nose": (40, 300), "left_shoulder": (80, 300), "right_shoulder": (80, 305),
    "left_elbow": (115, 308), "right_elbow": (115, 310), "left_wrist": (150, 310), "right_wrist": (150, 312),
    "left_hip": (180, 305), "right_hip": (180, 310), "left_knee": (270, 305), "right_knee": (270, 308),
    "left_ankle": (360, 310), "right_ankle": (360, 312),
}
# Side view, on hands and knees: torso level, arms and thighs hanging under it, shins flat behind.
CRAWLING = {
    "nose": (60, 190), "left_shoulder": (100, 200), "right_shoulder": (105, 200),
    "left_elbow": (100, 245), "right_elbow": (105, 245), "left_wrist": (100, 290), "right_wrist": (105, 290),
    "left_hip": (200, 205), "right_hip": (205, 205), "left_knee": (200, 290), "right_knee": (205, 290),
    "left_ankle": (290, 295), "right_ankle": (295, 295),
}
# Side view, bent at the hips to the floor: torso level, but the legs stand straight (taller than wide).
BENT_TO_THE_FLOOR = {
    "nose": (250, 210), "left_shoulder": (220, 200), "right_shoulder": (225, 200),
    "left_elbow": (222, 250), "right_elbow": (224, 250), "left_wrist": (222, 300), "right_wrist": (224, 300),
    "left_hip": (120, 200), "right_hip": (125, 200), "left_knee": (122, 290), "right_knee": (124, 290),
    "left_ankle": (122, 380), "right_ankle": (124, 380),
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


def test_long_stride_with_forward_lean_is_running():
    assert classify_posture(skeleton(RUNNING)) == ("running", 0.9)


def test_wide_stance_without_a_lean_is_standing():
    assert classify_posture(skeleton(UPRIGHT, left_ankle=(20, 380), right_ankle=(220, 380)))[0] == "standing"


def test_walking_stride_is_not_running():
    walking = skeleton(RUNNING, left_ankle=(70, 380), right_ankle=(190, 375))  # 1.2 torso lengths apart
    assert classify_posture(walking)[0] == "standing"


def test_running_needs_both_ankles_seen():
    assert classify_posture(skeleton(RUNNING, left_ankle=None))[0] == "standing"


def test_level_torso_flat_on_the_ground_is_lying_down():
    assert classify_posture(skeleton(LYING)) == ("lying_down", 0.9)


def test_level_torso_on_hands_and_knees_is_crawling():
    assert classify_posture(skeleton(CRAWLING)) == ("crawling", 0.9)


def test_bending_to_the_floor_on_straight_legs_is_bending_over_not_crawling():
    assert classify_posture(skeleton(BENT_TO_THE_FLOOR))[0] == "bending_over"


def test_level_torso_without_legs_seen_is_not_called_lying_down():
    """Legs out of sight: the body's extent is unknown, so the lean alone decides (bending over)."""
    hidden_legs = {name: None for name in ("left_knee", "right_knee", "left_ankle", "right_ankle")}
    assert classify_posture(skeleton(LYING, **hidden_legs))[0] == "bending_over"


def test_crawling_needs_a_hand_down_as_well_as_a_knee():
    no_hands = skeleton(CRAWLING, left_wrist=None, right_wrist=None)
    assert classify_posture(no_hands)[0] == "lying_down"


@pytest.mark.parametrize(
    "points, posture, suspicious",
    [
        (UPRIGHT, "standing", False),
        ({**UPRIGHT, "left_ankle": (105, 230), "right_ankle": (135, 230)}, "crouching", True),
        (CRAWLING, "crawling", True),
        (LYING, "lying_down", True),
        (BENT_TO_THE_FLOOR, "bending_over", False),
        (RUNNING, "running", False),
        ({**UPRIGHT, "right_wrist": (150, 40)}, "arms_raised", False),
    ],
)
def test_describe_posture_flags_the_postures_that_matter_at_a_door(points, posture, suspicious):
    assert describe_posture(skeleton(points)) == {"posture": posture, "confidence": 0.9, "suspicious": suspicious}


def test_suspicious_postures_are_the_low_ones():
    assert SUSPICIOUS_POSTURES == {"crouching", "crawling", "lying_down"}
    assert SUSPICIOUS_POSTURES < set(POSTURES)


def test_wrong_number_of_keypoints_is_unknown():
    assert classify_posture(skeleton(UPRIGHT)[:16]) == ("unknown", 0.0)


coordinate = st.floats(-2000, 2000, allow_nan=False)
low_confidence = st.floats(0.0, KEYPOINT_CONFIDENCE, exclude_max=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(coordinate, coordinate, low_confidence), min_size=17, max_size=17))
def test_all_low_confidence_keypoints_always_give_unknown(keypoints):
    assert classify_posture([list(k) for k in keypoints]) == ("unknown", 0.0)


@pytest.mark.parametrize("points", [{**UPRIGHT, "right_wrist": (150, 40)}, RUNNING, LYING, CRAWLING])
@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.booleans(), min_size=17, max_size=17),
    st.lists(st.tuples(coordinate, coordinate, low_confidence), min_size=17, max_size=17),
)
def test_unseen_keypoints_never_change_the_posture(points, hidden, noise):
    """Whatever an unseen keypoint's coordinates, the answer is the one given without it."""
    base = skeleton(points)
    masked = [[0.0, 0.0, 0.0] if h else k for h, k in zip(hidden, base)]
    noisy = [list(n) if h else k for h, k, n in zip(hidden, base, noise)]
    assert classify_posture(noisy) == classify_posture(masked)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(coordinate, coordinate, st.floats(0.0, 1.0)), min_size=17, max_size=17))
def test_any_keypoints_give_a_known_label_and_a_bounded_confidence(keypoints):
    posture, confidence = classify_posture([list(k) for k in keypoints])
    assert posture in POSTURES
    assert confidence == 0.0 if posture == "unknown" else KEYPOINT_CONFIDENCE <= confidence <= 1.0
    described = describe_posture([list(k) for k in keypoints])
    assert described == {"posture": posture, "confidence": confidence, "suspicious": posture in SUSPICIOUS_POSTURES}
