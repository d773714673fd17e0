"""Security defaults: a pickle message is refused, not executed; the worker serves on."""

from __future__ import annotations

import pickle
import time

import pytest
from kombu import Connection, Exchange, Producer

from tasks.sample_events import vehicle_event

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
    time.sleep(3)
    assert pool.client.stored("pickled") is None, "the pickled task never ran"
    assert "ContentDisallowed" in pool.log_tail(400) or "disallowed" in pool.log_tail(400).lower()
    assert len(pool.client.app.control.ping(timeout=2.0)) == 2, "workers still serve"
