"""Security defaults: a pickle message is refused, not executed, and its sender told; the worker serves on."""

from __future__ import annotations

import pickle
import time

import pytest
from celery.result import AsyncResult
from kombu import Connection, Exchange, Producer

from scripts.fixtures.sample_events import b64, bus_photo, vehicle_event

pytestmark = pytest.mark.integration


def test_pickled_message_is_refused(pool):
    event = vehicle_event("pickled")
    with Connection(pool.redis_url) as connection:
        producer = Producer(connection, exchange=Exchange("router", type="direct"), routing_key="router")
        producer.publish(
            pickle.dumps(((event,), {}, {})), content_type="application/x-python-serialize",
            content_encoding="binary", headers={"task": "enrich_detection", "id": "pickled-task", "lang": "py"},
            routing_key="router", declare=[],
        )
    answer = AsyncResult("pickled-task", app=pool.client.app).get(timeout=30)
    assert answer["status"] == "rejected" and "JSON only" in answer["errors"]["message"], "its sender is told why"
    time.sleep(1)
    assert pool.client.stored("pickled") is None, "the pickled task never ran"
    assert "is refused: JSON only" in pool.log_tail(400)
    assert len(pool.client.app.control.ping(timeout=2.0)) == 2, "workers still serve"


def test_malformed_events_through_the_pool_never_crash_a_worker(pool):
    """Twenty malformed events of every kind through the real workers: each gets a terminal result."""
    from tests.unit.test_event_fuzz import png_claiming

    base = vehicle_event("fz")
    bad_values = [
        {"bbox": [float("nan"), 0, 10, 10]}, {"bbox": [0, 0, 0, 0]}, {"bbox": "wide"}, {"bbox": [-5, -5, -1, -1]},
        {"confidence": 7}, {"confidence": "high"}, {"timestamp": "yesterday"}, {"event_id": "a b/c"},
        {"event_id": ""}, {"detection_type": 42}, {"suspicious_score": -3}, {"frames": "many"},
        {"frames": [{"image": "@@"}]}, {"image": "x" * 30_000_000}, {"image": b64(png_claiming(90_000, 90_000))},
        {"image": b64(bus_photo()[:100])}, {"image": None}, {"image_key": "frame:absent", "image": None},
        {"image_path": "/etc/hostname", "image": None}, {"face_bbox": [1, 2]},
    ]
    results = []
    for n, change in enumerate(bad_values):
        event = base | {"event_id": f"fz-{n}"} | change
        results.append(pool.client.enrich(event, timeout=120))
    statuses = [r["status"] for r in results]
    print(f"\n[pool fuzz] sent={len(bad_values)} statuses={ {s: statuses.count(s) for s in set(statuses)} }")
    assert all(s == "rejected" for s in statuses), [(r["event_id"], r["errors"]) for r in results if r["status"] != "rejected"]
    assert len(pool.client.app.control.ping(timeout=2.0)) == 2, "no worker crashed"
