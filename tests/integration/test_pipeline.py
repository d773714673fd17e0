"""One detection event flows through real Redis and real Celery workers to a stored enrichment."""

from __future__ import annotations

import base64

import pytest

from tasks.sample_events import animal_event, b64, bus_photo, person_event, vehicle_event

pytestmark = pytest.mark.integration

PERSON_MODELS = {"clothing", "pose", "threat", "reid", "depth", "florence", "clip"}


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
    check_records(result, PERSON_MODELS)
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
