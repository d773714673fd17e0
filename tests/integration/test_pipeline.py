"""One detection event flows through real Redis and real Celery workers to a stored enrichment."""

from __future__ import annotations

import base64

import pytest

from prompt_formatting import (
    format_clip_scene_context,
    format_depth_context,
    format_florence_scene_context,
    format_ondemand_enrichment_context,
)
from prompt_formatting.untrusted import clean_text
from scripts.fixtures.sample_events import animal_event, b64, bus_photo, person_event, vehicle_event

pytestmark = pytest.mark.integration

PERSON_MODELS = {"clothing", "pose", "threat", "reid", "depth", "face", "florence", "clip"}


def readable(florence: dict) -> bool:
    """Whether Florence's stored answer (the seed's shape) holds a caption or a label that survives the prompt's
    cleaning (prompt_formatting/untrusted.py)."""
    caption = florence.get("scene")
    if isinstance(caption, dict):  # Florence's own {task: text}
        caption = next(iter(caption.values()), None)
    labels = [label for key in ("security_objects", "text_regions")
              for label in (florence.get(key) or {}).get("labels") or []]
    return bool(clean_text(caption, "caption")) or any(clean_text(label) for label in labels)


def check_records(result: dict, expected: set[str]) -> None:
    assert set(result["models"]) == expected
    for name, record in result["models"].items():
        assert record["status"] == "ok", (name, record)
        assert record["worker"].startswith("cpu0@")
        assert record["device"] == "cpu"
        assert record["infer_ms"] > 0
        assert isinstance(record["data"], dict)


def test_person_event_is_enriched_and_stored(pool):
    result = pool.client.enrich(person_event("it-person"), timeout=300)
    assert result["status"] == "complete", result["errors"]
    # the backend said no face; face detection (MTCNN's real weights) finds one in the photo, which asks for
    # age and gender on its box in a second round
    check_records(result, PERSON_MODELS | {"age_gender"})
    assert result["follow_ups"]["age_gender"]["asked_by"] == "a face found by face detection"
    assert result["enrichment"]["demographics"]["face_source"] == "face_bbox"
    assert set(result["enrichment"]) >= {"clothing", "pose", "threat", "reid", "depth", "scene"}
    assert "front_door" in result["prompt"]
    assert pool.client.stored("it-person") == result
    assert 0 < pool.client.redis.ttl("enrichment:it-person")
    assert pool.client.redis.exists("frame:it-person:full") == 0, "frames are deleted once assembled"


def test_face_and_frames_add_age_gender_and_action(pool):
    result = pool.client.enrich(person_event("it-face", face=True, suspicious=80, frames=4), timeout=300)
    assert result["status"] == "complete", result["errors"]
    check_records(result, PERSON_MODELS | {"age_gender", "action"})
    assert result["enrichment"]["demographics"]["face_source"] == "face_bbox"
    assert len(result["enrichment"]["action"]["top_actions"]) == 3


# The seed document's keys per model, where the stored enrichment holds them.
SEED_KEYS = {
    ("scene", "florence"): {"scene", "security_objects", "text_regions"},
    ("threat",): {"threats_detected", "threats", "highest_threat"},
    ("pose",): {"poses"},
    ("demographics",): {"age_group", "gender", "confidence"},
    ("action",): {"top_action", "confidence", "all_scores"},
    ("reid_match",): {"identity", "similarity", "sighting_count"},
}


def at(enrichment: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        enrichment = enrichment[key]
    return enrichment


def seed_view(enrichment: dict) -> dict:
    """Only what a backend written against the seed document reads: its keys, where it reads them."""
    view: dict = {}
    for path, keys in SEED_KEYS.items():
        target = view
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = {k: at(enrichment, path)[k] for k in keys}
    return view


def test_a_suspicious_person_with_face_and_frames_is_stored_in_the_seeds_shapes(pool):
    """Stored through the real pool, the enrichment carries the seed's keys, and the public formatters given
    only those keys print the seed's sections (this person is sighted twice, so the second is recognised)."""
    pool.client.enrich(person_event("it-seed-first", face=True, suspicious=80, frames=4), timeout=300)
    result = pool.client.enrich(person_event("it-seed", face=True, suspicious=80, frames=4), timeout=300)
    assert result["status"] == "complete", result["errors"]
    enrichment = pool.client.stored("it-seed")["enrichment"]
    for path, keys in SEED_KEYS.items():
        assert keys <= set(at(enrichment, path)), path

    florence = enrichment["scene"]["florence"]
    assert isinstance(florence["scene"], str)
    assert {"labels", "bboxes"} <= set(florence["security_objects"]) and "labels" in florence["text_regions"]
    threat = enrichment["threat"]
    assert isinstance(threat["threats_detected"], bool) and isinstance(threat["threats"], list)
    assert all({"type", "confidence", "bbox", "severity"} <= set(t) for t in threat["threats"])
    assert all({"posture", "confidence", "keypoints", "suspicious"} <= set(p) for p in enrichment["pose"]["poses"])
    assert enrichment["demographics"]["age_group"] is not None
    assert set(enrichment["action"]["all_scores"]) >= {a["action"] for a in enrichment["action"]["top_actions"]}
    assert enrichment["reid_match"]["identity"] == enrichment["reid"]["reid_match"]["identity"]
    assert enrichment["reid_match"]["sighting_count"] == enrichment["reid"]["reid_match"]["sighting_count"] - 1 >= 1
    assert isinstance(enrichment["depth"]["distance_m"], float)
    clip = enrichment["scene"]["clip"]
    assert clip["tags"] and all(set(tag) == {"label", "score"} for tag in clip["tags"])
    assert clip["anomaly"]["baseline_count"] >= 1  # scored once the camera's baseline reaches its minimum

    seed_only = seed_view(enrichment)
    ondemand = format_ondemand_enrichment_context(seed_only)
    for heading in ("### Threat Detection", "### Person Demographics", "### Detected Activity",
                    "### Person Recognition"):
        assert heading in ondemand, heading
    if seed_only["pose"]["poses"]:  # the tiny random pose model mostly finds nobody above POSE_CONFIDENCE
        assert "### Body Posture Analysis" in ondemand
    florence_text = format_florence_scene_context(seed_only["scene"])
    # tiny random Florence may answer nothing readable: only location tokens (removed), or labels that are nothing but
    # markdown or special tokens once cleaned for the prompt; its section is there exactly when something readable is
    assert florence_text.startswith("### Scene Analysis (Florence-2)") if readable(seed_only["scene"]["florence"]) \
        else florence_text == ""
    assert "(approximate)" in format_depth_context(enrichment["depth"])
    assert "Previous sightings" in result["prompt"] and "Estimated age group" in result["prompt"]
    assert format_clip_scene_context(enrichment["scene"]) == "" or "### Scene Context (CLIP)" in result["prompt"]


def test_frames_already_in_redis_are_used_in_place_and_left_to_their_owner(pool):
    """A backend that stores its frames itself sends image_key: nothing is copied, nothing of its deleted."""
    event = person_event("it-keyed", face=True, suspicious=80, frames=3)
    redis = pool.client.redis
    keys = [f"backend:it-keyed:{i}" for i in range(4)]
    for key, source in zip(keys, [event] + event["frames"]):
        redis.set(key, base64.b64decode(source.pop("image")), ex=300)
        source["image_key"] = key
    result = pool.client.enrich(event, timeout=300)
    assert result["status"] == "complete", result["errors"]
    check_records(result, PERSON_MODELS | {"age_gender", "action"})
    assert redis.exists(*keys) == 4, "the backend's frames are its own"
    assert not list(redis.scan_iter(match="frame:it-keyed:*")), "no copies were made"


def test_vehicle_event_gets_vehicle_and_depth(pool):
    result = pool.client.enrich(vehicle_event("it-vehicle"), timeout=300)
    assert result["status"] == "complete", result["errors"]
    check_records(result, {"vehicle", "depth"})
    assert result["detection_type"] == "vehicle"
    assert isinstance(result["enrichment"]["vehicle"]["label"], str)


def test_animal_event_gets_pet_and_depth(pool):
    result = pool.client.enrich(animal_event("it-animal"), timeout=300)
    assert result["status"] == "complete", result["errors"]
    check_records(result, {"pet", "depth"})


def test_second_submission_of_an_event_returns_the_stored_result(pool):
    first = pool.client.enrich(vehicle_event("it-twice"), timeout=300)
    second = pool.client.enrich(vehicle_event("it-twice"), timeout=300)
    assert second == first


@pytest.mark.parametrize(
    "event, field",
    [
        ({k: v for k, v in vehicle_event("bad-missing").items() if k != "camera_id"}, "camera_id"),
        (vehicle_event("bad-corrupt") | {"image": b64(bus_photo()[:3000])}, "image"),
        (vehicle_event("bad-notimage") | {"image": b64(b"definitely not a jpeg")}, "image"),
        (vehicle_event("bad-outside") | {"bbox": [2000, 2000, 2100, 2100]}, "bbox"),
        (vehicle_event("bad-inverted") | {"bbox": [100, 100, 50, 50]}, "bbox"),
        (vehicle_event("bad-label") | {"detection_type": "umbrella"}, "detection_type"),
        (vehicle_event("bad-base64") | {"image": "%%%"}, "image"),
        (vehicle_event("bad-path") | {"image": None, "image_path": "../../etc/passwd"}, "image_path"),
    ],
)
def test_bad_input_is_rejected_naming_the_field(pool, event, field):
    result = pool.client.enrich(event, timeout=60)
    assert result["status"] == "rejected"
    assert field in result["errors"], result["errors"]
    assert pool.client.stored(result["event_id"]) == result


def test_non_object_event_is_rejected(pool):
    result = pool.client.enrich("not an event", timeout=60)
    assert result["status"] == "rejected"
    assert "event" in result["errors"]


def test_workers_survive_bad_input(pool):
    replies = pool.client.app.control.ping(timeout=2.0)
    assert len(replies) == 2
