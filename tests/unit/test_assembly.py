"""Assembly finishes the stored shapes: the seed's keys per model, reid_match on top, metres, types, scene anomaly."""

from __future__ import annotations

import time

import numpy as np
import pytest

from prompt_formatting import (
    format_clip_scene_context,
    format_depth_context,
    format_florence_scene_context,
    format_ondemand_enrichment_context,
    format_vehicle_context,
)
from tasks.pipeline import assemble_result
from tasks.reid_gallery import ReidGallery
from tasks.scene_baseline import SceneBaseline
from tasks.schemas import EnrichmentResult, EventSummary, RoutedEvent
from tests.unit.test_posture import UPRIGHT, skeleton
from workers.finishing import Finishing
from workers.models.action import action_report, load_actions
from workers.models.age_gender import dual_head_result
from workers.models.depth import add_distance
from workers.models.hf_family import classified_type
from workers.models.pose import pose_result
from workers.models.reid import seed_reid_match
from workers.models.threat import threat_report
from workers.settings import DepthSettings

PERSON_BOX = (95.0, 60.0, 150.0, 390.0)
CROUCHING = skeleton(UPRIGHT, left_ankle=(105, 230), right_ankle=(135, 230))
SEED_KEYS = {
    "florence": {"scene", "security_objects", "text_regions"},
    "threat": {"threats_detected", "threats", "highest_threat"},
    "pose": {"poses"},
    "demographics": {"age_group", "gender", "confidence"},
    "action": {"top_action", "confidence", "all_scores"},
    "reid_match": {"identity", "similarity", "sighting_count"},
}


def unit(seed: int, dim: int = 16) -> list[float]:
    vector = np.random.default_rng(seed).normal(size=dim)
    return (vector / np.linalg.norm(vector)).round(6).tolist()


def routed(event_id: str, camera_id: str = "front_door", planned: list[str] | None = None) -> RoutedEvent:
    now = time.time()
    summary = EventSummary(event_id=event_id, camera_id=camera_id, timestamp="2026-01-19T02:14:07Z",
                           detection_type="person", confidence=0.9, bbox=PERSON_BOX, face_visible=True,
                           suspicious_score=80)
    planned = planned if planned is not None else list(person_records())
    return RoutedEvent(event=summary, planned=planned, placement={}, task_ids={}, frame_key=f"frame:{event_id}:full",
                       frame_size=(640, 480), received_at=now, routed_at=now)


def person_records(reid_seed: int = 1, frame_seed: int = 2) -> dict[str, dict]:
    """What the families answer for a suspicious person with a face and frames (their own report functions)."""
    actions = load_actions()
    probabilities = [0.03] * len(actions)
    probabilities[actions.index("person picking lock")] = 0.67
    data = {
        "threat": threat_report([{"type": "knife", "confidence": 0.81, "bbox": [100, 200, 120, 240]}], 0.5),
        "pose": pose_result(PERSON_BOX, [list(PERSON_BOX)], [CROUCHING]),
        "age_gender": {**dual_head_result(34.2, 0.2), "face_source": "face_bbox"},
        "action": action_report(actions, probabilities, frames_used=8),
        "reid": {"embedding": unit(reid_seed, 512), "dim": 512},
        "depth": {"relative_depth": 0.5, "proximity": "medium"},
        "florence": {"scene": "A man crouches by the back door holding a knife.",
                     "security_objects": {"labels": ["person", "knife"], "bboxes": [[0, 0, 1, 1], [2, 2, 3, 3]]},
                     "text_regions": {"labels": ["EXIT"], "quad_boxes": [[0, 0, 1, 0, 1, 1, 0, 1]]}},
        "clip": {"frame_embedding": unit(frame_seed), "crop_embedding": unit(frame_seed + 100), "dim": 16,
                 "tags": [{"label": "a person at night", "score": 0.61}]},
    }
    return {name: {"model": name, "status": "ok", "data": answer} for name, answer in data.items()}


@pytest.fixture
def gallery(redis_client) -> ReidGallery:
    return ReidGallery(redis_client, threshold=0.75, ttl_seconds=60)


@pytest.fixture
def baseline(redis_client) -> SceneBaseline:
    return SceneBaseline(redis_client, size=20, ttl_seconds=60, min_frames=3, interval_seconds=0, threshold=0.25)


def test_the_stored_enrichment_carries_the_seeds_keys_and_the_formatters_print_its_sections(gallery, baseline):
    assemble_result(person_records().values(), routed("evt-1"), gallery, baseline)
    result = assemble_result(person_records().values(), routed("evt-2"), gallery, baseline)
    enrichment = result.model_dump(mode="json")["enrichment"]
    places = {"florence": enrichment["scene"]["florence"], "reid_match": enrichment["reid_match"]}
    for name, keys in SEED_KEYS.items():
        assert keys <= set(places.get(name, enrichment.get(name, {}))), name
    assert enrichment["threat"]["highest_threat"]["severity"] == "high"
    assert enrichment["pose"]["poses"][0]["suspicious"] is True
    assert enrichment["demographics"]["age_group"] == "30-39"

    ondemand = format_ondemand_enrichment_context(enrichment)
    for heading in ("### ⚠️ THREAT DETECTED", "### Body Posture Analysis", "### Person Demographics",
                    "### Detected Activity", "### Person Recognition"):
        assert heading in ondemand
    assert "crouching (confidence: 90%), a suspicious posture at a door" in ondemand
    assert '**Scene Description:**\n"A man crouches' in format_florence_scene_context(enrichment["scene"])
    assert result.context_attributes >= 12
    assert result.status == "complete"


def test_reid_match_is_on_top_only_for_a_person_seen_before_counting_earlier_sightings(gallery):
    first = assemble_result(person_records().values(), routed("evt-1"), gallery).model_dump(mode="json")["enrichment"]
    assert "reid_match" not in first, "a first sighting matches nobody known"
    assert first["reid"]["reid_match"]["new"] is True
    second = assemble_result(person_records().values(), routed("evt-2"), gallery).model_dump(mode="json")["enrichment"]
    third = assemble_result(person_records().values(), routed("evt-3"), gallery).model_dump(mode="json")["enrichment"]
    identity = first["reid"]["reid_match"]["identity"]
    assert second["reid_match"] == {"identity": identity, "similarity": 1.0, "sighting_count": 1, "name": None}
    assert third["reid_match"]["sighting_count"] == 2 and third["reid"]["reid_match"]["sighting_count"] == 3
    seed_only = {"reid_match": {k: third["reid_match"][k] for k in SEED_KEYS["reid_match"]}}
    assert f'- **Match**: "{identity}"' in format_ondemand_enrichment_context(seed_only)
    assert "- **Previous sightings**: 2 times" in format_ondemand_enrichment_context(seed_only)
    assert "- **Previous sightings**: 2 times (3 including this one)" in format_ondemand_enrichment_context(third)


def test_seed_reid_match_shape():
    match = {"identity": "person-0007", "name": "Dana", "similarity": 0.91, "sighting_count": 14, "new": False,
             "cameras": ["front_door"], "first_seen": 1.0, "last_seen": 2.0}
    assert seed_reid_match(match) == {"identity": "person-0007", "similarity": 0.91, "sighting_count": 13,
                                      "name": "Dana"}
    assert seed_reid_match({**match, "new": True, "sighting_count": 1}) is None


def test_depth_gets_approximate_metres_in_the_cameras_calibrated_range():
    depth = DepthSettings(calibration="front_door=0.8:12", near_m=1.0, far_m=20.0)
    at_door = assemble_result(person_records().values(), routed("evt-1"), None,
                              depth=depth).model_dump(mode="json")["enrichment"]["depth"]
    elsewhere = assemble_result(person_records().values(), routed("evt-2", "garden"), None, depth=depth)
    assert at_door == {"relative_depth": 0.5, "proximity": "medium", "distance_m": 1.5}  # 1 / (0.5/0.8 + 0.5/12)
    assert elsewhere.model_dump(mode="json")["enrichment"]["depth"]["distance_m"] == 1.9  # the default 1-20 m range
    assert "medium distance, about 1.5 m (approximate)" in format_depth_context(at_door)


def test_a_depth_section_without_a_relative_depth_gets_no_metres_and_is_left_out_as_off_contract():
    section = {"proximity": "far"}
    add_distance({"depth": section}, Finishing(camera_id="cam", depth=DepthSettings.model_construct(near_m=1.0, far_m=20.0,
                                                                                                  calibration={})))
    assert section == {"proximity": "far"}
    records = {"depth": {"model": "depth", "status": "ok", "data": {"proximity": "far"}}}
    result = assemble_result(records.values(), routed("evt-1", planned=["depth"]), None)
    assert "depth" not in result.model_dump(mode="json")["enrichment"]
    assert result.status == "partial"
    assert result.errors["depth"].startswith("error: its result does not match schema")
    assert "depth.relative_depth" in result.errors["depth"]


@pytest.mark.parametrize(("answer", "expected"), [
    ({"label": "Pickup_Trucks", "confidence": 0.8, "top_k": [{"label": "Pickup_Trucks", "score": 0.8}]},
     "pickup truck"),
    ({"label": "background", "confidence": 0.7,
      "top_k": [{"label": "background", "score": 0.7}, {"label": "cars", "score": 0.2}]}, None),
    ({"label": "background", "confidence": 0.3,
      "top_k": [{"label": "background", "score": 0.3}, {"label": "SUV", "score": 0.6}]}, "suv"),
    ({"label": "pedestrian", "confidence": 0.9, "top_k": [{"label": "pedestrian", "score": 0.9}]}, None),
    ({"label": "car", "confidence": 0.35, "top_k": [{"label": "car", "score": 0.35}]}, None),
    ({"label": "LABEL_3", "confidence": 0.9, "top_k": [{"label": "LABEL_3", "score": 0.9}]}, None),
    ({"label": "Buses", "confidence": 0.4, "top_k": []}, "bus"),
])
def test_vehicle_type_is_what_the_prompt_names_or_null(answer, expected):
    records = {"vehicle": {"model": "vehicle", "status": "ok", "data": answer}}
    result = assemble_result(records.values(), routed("evt-1", planned=["vehicle"]), None)
    stored = result.model_dump(mode="json")["enrichment"]["vehicle"]
    assert stored["vehicle_type"] == expected and stored["label"] == answer["label"]
    line = format_vehicle_context(stored).splitlines()[1]
    assert ("uncertain" in line) == (expected is None)
    if expected is not None:
        assert line.startswith(f"- **Vehicle type**: {expected}")


def test_pet_type_never_names_a_person():
    assert classified_type({"label": "person", "confidence": 0.9, "top_k": [{"label": "Dogs", "score": 0.05}]},
                           frozenset({"person"})) is None
    records = {"pet": {"model": "pet", "status": "ok",
                       "data": {"label": "Cats", "confidence": 0.9, "top_k": [{"label": "Cats", "score": 0.9}]}}}
    result = assemble_result(records.values(), routed("evt-1", planned=["pet"]), None)
    assert result.model_dump(mode="json")["enrichment"]["pet"]["pet_type"] == "cat"


def test_scene_anomaly_appears_once_the_camera_has_a_baseline(baseline):
    answers = [assemble_result(person_records(frame_seed=2).values(), routed(f"evt-{i}"), None, baseline)
               for i in range(4)]
    first, fourth = (a.model_dump(mode="json")["enrichment"]["scene"]["clip"]["anomaly"] for a in (answers[0], answers[3]))
    assert first == {"score": None, "unusual": None, "baseline_count": 0}
    assert fourth == {"score": pytest.approx(0.0, abs=1e-3), "unusual": False, "baseline_count": 3}
    assert "Scene anomaly" not in answers[0].prompt
    assert "typical for this camera (anomaly score 0.00, compared with 3 earlier frames)" in answers[3].prompt
    other = assemble_result(person_records(frame_seed=77).values(), routed("evt-9"), None, baseline)
    assert other.model_dump(mode="json")["enrichment"]["scene"]["clip"]["anomaly"]["unusual"] is True
    assert "unusual for this camera" in format_clip_scene_context(other.model_dump(mode="json")["enrichment"]["scene"])


def test_a_failing_scene_baseline_is_named_and_makes_the_event_partial(redis_client):
    class Broken(SceneBaseline):
        def score_and_learn(self, embedding, camera_id):
            raise ConnectionError("redis went away")

    result = assemble_result(person_records().values(), routed("evt-1"), None, Broken(redis_client))
    assert result.status == "partial"
    assert result.errors == {"scene_baseline": "error: redis went away"}
    assert "anomaly" not in result.model_dump(mode="json")["enrichment"]["scene"]["clip"]
    assert '- scene_baseline (whether the scene is unusual for this camera): "error: redis went away"' in result.prompt


def test_without_gallery_or_baseline_the_result_has_neither():
    result = assemble_result(person_records().values(), routed("evt-1"), None)
    enrichment = result.model_dump(mode="json")["enrichment"]
    assert "reid_match" not in enrichment and "reid_match" not in enrichment["reid"]
    assert "anomaly" not in enrichment["scene"]["clip"]
    assert result.status == "complete"


# -- the chord callback: the routed event comes from the ledger, the chord carries only the event id ------------
@pytest.fixture
def callback(redis_client, monkeypatch):
    from tasks import assemble as assemble_module
    from tasks.ledger import Ledger
    from tasks.results import ResultStore

    monkeypatch.setattr(assemble_module, "redis_client", lambda: redis_client)
    monkeypatch.setattr(assemble_module, "result_store", lambda: ResultStore(redis_client, 600))
    return assemble_module.assemble, Ledger(redis_client), ResultStore(redis_client, 600)


def test_the_callback_reads_the_routed_event_from_the_ledger_and_closes_it(callback, redis_client):
    assemble, ledger, _ = callback
    ledger.open(routed("cb-1", planned=["pose"]).model_copy(update={"group_id": "g-1"}), deadline_seconds=60,
                ttl_seconds=600)
    record = {"model": "pose", "status": "ok", "data": {"poses": [], "posture": "standing", "keypoints": []}}
    result = assemble.run([record], "cb-1", "g-1")
    assert result["event_id"] == "cb-1" and result["status"] == "complete", result
    assert redis_client.get("ledger:cb-1") is None, "assembly closes the ledger entry"
    assert ledger.routed("cb-1") is None


def test_a_callback_of_another_chord_changes_nothing(callback, redis_client):
    assemble, ledger, store = callback
    ledger.open(routed("cb-5", planned=["pose"]).model_copy(update={"group_id": "g-5"}), deadline_seconds=60,
                ttl_seconds=600)
    record = {"model": "pose", "status": "ok", "data": {"posture": "standing", "keypoints": []}}
    assert assemble.run([record], "cb-5", "forged")["status"] == "partial"
    assert assemble.run([record], "cb-5")["status"] == "partial"
    assert store.get("cb-5") is None and ledger.routed("cb-5") is not None, "nothing stored, the entry still open"


def test_a_callback_after_the_sweeper_returns_the_stored_result(callback):
    assemble, ledger, store = callback
    swept = EnrichmentResult(event_id="cb-2", status="partial", errors={"models": "swept"})
    store.save(swept)  # the sweeper finished the event and closed its ledger entry
    assert assemble.run([{"model": "pose", "status": "ok", "data": {}}], "cb-2")["errors"] == {"models": "swept"}


def test_a_callback_without_ledger_or_result_is_partial_and_says_why(callback):
    assemble, _, _ = callback
    result = assemble.run([], "cb-3")
    assert result["status"] == "partial" and "routing record" in result["errors"]["event_id"]


def test_a_routed_event_in_the_message_is_not_trusted_and_changes_nothing(callback, redis_client):
    assemble, _, store = callback
    result = assemble.run([], routed("cb-4", planned=[]).model_dump(mode="json"))
    assert "error" in result and store.get("cb-4") is None
    assert redis_client.dbsize() == 0
