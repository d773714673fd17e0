"""A model that raises, one that hangs, one whose weights are missing: the event ends partial, the worker serves on."""

from __future__ import annotations

import pytest

from scripts.fixtures.sample_events import person_event
from tests.reliability.conftest import report

pytestmark = pytest.mark.integration

FAULTS = {
    "THREAT_MODEL_FAMILY": "tests.fault_models:RaisingModel",
    "POSE_MODEL_FAMILY": "tests.fault_models:HangingModel",
    "DEPTH_MODEL_PATH": "/nonexistent/depth-weights",
    "MODEL_SOFT_TIME_LIMIT": "10",
    "MODEL_TIME_LIMIT": "40",
}


def test_failing_models_end_partial_with_named_reasons(make_pool):
    pool, _ = make_pool(FAULTS)
    results = {}
    for n in range(2):  # the second event shows the worker kept serving after each failure
        event = person_event(f"faults-{n}")
        results[event["event_id"]] = result = pool.client.enrich(event, timeout=180)
        models = result["models"]
        assert result["status"] == "partial"
        assert models["threat"]["status"] == "error" and "injected failure" in models["threat"]["error"]
        assert models["pose"]["status"] == "timeout" and "soft time limit" in models["pose"]["error"]
        assert models["depth"]["status"] == "error" and "missing" in models["depth"]["error"]
        assert models["clothing"]["status"] == "ok" and models["reid"]["status"] == "ok"
        assert set(result["errors"]) == {"threat", "pose", "depth"}
        for name in ("threat", "pose", "depth"):
            assert name in result["prompt"].split("Unavailable", 1)[-1], "failed models are named in the prompt"
    report("model failures", 2, results)
