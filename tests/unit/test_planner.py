"""The router's plan reproduces the seed's scenario table exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.schemas import DetectionEvent
from workers.registry import LABEL_ALIASES, REGISTRY, detection_type_of, plan_models


def event(detection_type="person", face_visible=False, suspicious_score=0.0, frames=0, **extra):
    return DetectionEvent(
        event_id="e1", camera_id="front_door", timestamp="2026-11-24T22:00:00Z", detection_type=detection_type,
        confidence=0.9, bbox=(10, 10, 100, 200), face_visible=face_visible, suspicious_score=suspicious_score,
        image="aGVsbG8=", frames=[{"image": "aGVsbG8="}] * frames, **extra,
    )


def test_person_without_face_gets_clothing_pose_threat_reid_depth_face():
    assert set(plan_models(event())) == {"clothing", "pose", "threat", "reid", "depth", "face"}


def test_person_with_face_adds_age_gender():
    assert set(plan_models(event(face_visible=True))) == {"clothing", "pose", "threat", "reid", "depth", "face",
                                                          "age_gender"}


def test_suspicious_person_with_frames_adds_action():
    assert set(plan_models(event(suspicious_score=75, frames=8))) == {
        "clothing", "pose", "threat", "reid", "depth", "face", "action"
    }


def test_suspicious_without_frames_gets_no_action():
    assert "action" not in plan_models(event(suspicious_score=90, frames=0))


def test_score_of_exactly_fifty_is_not_suspicious():
    assert "action" not in plan_models(event(suspicious_score=50, frames=4))


def test_vehicle_gets_vehicle_and_depth():
    assert set(plan_models(event("car"))) == {"vehicle", "depth"}


def test_animal_gets_pet_and_depth():
    assert set(plan_models(event("dog"))) == {"pet", "depth"}


def test_face_flag_does_not_add_age_gender_to_vehicles():
    assert set(plan_models(event("truck", face_visible=True))) == {"vehicle", "depth"}


def test_plan_is_in_priority_order_threat_first():
    plan = plan_models(event(face_visible=True, suspicious_score=80, frames=4))
    priorities = [REGISTRY[name].priority for name in plan]
    assert plan[0] == "threat"
    assert priorities == sorted(priorities, reverse=True)


def test_scene_models_join_only_when_configured():
    assert set(plan_models(event(), scene_models=["florence", "clip"])) == {
        "clothing", "pose", "threat", "reid", "depth", "face", "florence", "clip"
    }
    # on vehicles (when SCENE_DETECTION_TYPES names vehicle) Florence reads plates and CLIP gives the car's look
    assert set(plan_models(event("car"), scene_models=["florence", "clip"])) == {"vehicle", "depth", "florence", "clip"}


def test_unknown_scene_model_is_refused():
    with pytest.raises(ValueError, match="not scene models"):
        plan_models(event(), scene_models=["threat"])


@pytest.mark.parametrize("label", ["car", "truck", "bus", "motorcycle", "bicycle", "Car ", "TRUCK"])
def test_vehicle_labels_normalise(label):
    assert detection_type_of(label) == "vehicle"


@pytest.mark.parametrize("label", ["dog", "cat", "bird", "horse"])
def test_animal_labels_normalise(label):
    assert detection_type_of(label) == "animal"


def test_unknown_label_is_not_normalised():
    assert detection_type_of("umbrella") is None


@given(st.sampled_from(sorted(LABEL_ALIASES)), st.booleans(), st.floats(0, 100), st.integers(0, 3))
def test_every_plan_has_depth_and_only_known_models(label, face, score, frames):
    plan = plan_models(event(label, face_visible=face, suspicious_score=score, frames=frames))
    assert "depth" in plan
    assert len(plan) == len(set(plan))
    assert all(name in REGISTRY for name in plan)
