"""The pool's own evidence asks for more models in a second round (real pool; a stand-in pose family crouches,
since tiny random weights see no posture)."""

from __future__ import annotations

import pytest

from scripts.fixtures.sample_events import person_event
from tests.integration.conftest import started_pool

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def crouching_pool(pool_models_dir, tmp_path_factory):
    with started_pool(pool_models_dir, tmp_path_factory.mktemp("evidence-logs"),
                      {"POSE_MODEL_FAMILY": "tests.stand_in_models:CrouchingPoseModel"}) as running:
        yield running


def test_a_crouching_posture_asks_for_action_recognition(crouching_pool):
    event = person_event("ev-crouch", frames=4)  # the backend's suspicion score is 0: only the posture asks
    assert event["suspicious_score"] <= 50
    result = crouching_pool.client.enrich(event, timeout=300)
    assert result["status"] == "complete", result["errors"]
    assert result["models"]["action"]["status"] == "ok"
    assert result["follow_ups"]["action"] == {"asked_by": "a crouching posture", "ran": True, "missing": None}
    assert "top_action" in result["enrichment"]["action"]
    assert "crouching" in result["prompt"] and "Detected Activity" in result["prompt"]
    assert crouching_pool.client.stored("ev-crouch") == result, "the caller gets the second round's assembly"
    assert crouching_pool.client.redis.exists("ledger:ev-crouch", "frame:ev-crouch:full") == 0


def test_without_frames_the_result_says_action_was_asked_for_but_not_run(crouching_pool):
    result = crouching_pool.client.enrich(person_event("ev-crouch-noframes"), timeout=300)
    assert result["status"] == "complete", result["errors"]
    assert "action" not in result["models"]
    assert result["follow_ups"]["action"]["ran"] is False
    assert "no frames" in result["follow_ups"]["action"]["missing"]
    assert "not run: asked for by a crouching posture" in result["prompt"]


def test_the_seed_frames_buffer_is_taken_as_frames(crouching_pool):
    event = person_event("ev-buffer", frames=3)
    event["frames_buffer"] = [frame["image"] for frame in event.pop("frames")]
    result = crouching_pool.client.enrich(event, timeout=300)
    assert result["models"]["action"]["status"] == "ok", result["models"].get("action")
