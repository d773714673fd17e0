"""Redis restarted mid-stream (persistence on): workers reconnect and every event reaches a terminal result."""

from __future__ import annotations

import time

import pytest

from scripts.fixtures.sample_events import animal_event, vehicle_event
from tests.reliability.conftest import report, wait_for_results

pytestmark = pytest.mark.integration


def test_events_survive_a_redis_restart(make_pool):
    pool, server = make_pool({}, persistent=True)
    before = [vehicle_event(f"restart-a{n}") for n in range(3)]
    after = [animal_event(f"restart-b{n}") for n in range(3)]
    for event in before:
        pool.client.submit(event)
    time.sleep(0.5)
    server.stop()  # SIGTERM: redis writes its append-only file and exits
    time.sleep(3)
    server.start()  # same port, same directory: the queued messages come back from the AOF
    for event in after:
        pool.client.submit(event)
    ids = [e["event_id"] for e in before + after]
    results = wait_for_results(pool, ids, timeout=240)
    report("redis restart", len(ids), results)
    assert set(results) == set(ids)
    assert all(r["status"] in ("complete", "partial") for r in results.values())
    served_after = [results[e["event_id"]]["models"]["depth"]["worker"] for e in after]
    assert all(worker and worker.startswith("cpu0@") for worker in served_after), "the device worker reconnected"
