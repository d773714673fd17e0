"""Placement: affinity first (unless turned off), then free memory less what the event already sent, then static."""

from __future__ import annotations

import json

import pytest

from tasks.placement import choose_queue
from workers.state import WORKER_INDEX, WorkerState, live_workers, publish_state, withdraw_state

GB = 1024 ** 3


def worker(queue: str, models: tuple[str, ...], free_gb: float, updated_at: float = 1000.0) -> WorkerState:
    return WorkerState(worker=f"{queue}@host", queue=queue, device="cpu", models=models, used_bytes=0,
                       free_bytes=int(free_gb * GB), budget_bytes=8 * GB, updated_at=updated_at)


def test_a_worker_holding_the_model_wins_even_with_less_free_memory():
    workers = [worker("gpu.0", ("pose",), 1), worker("gpu.1", (), 6)]
    assert choose_queue("pose", workers, ["gpu.0"]) == "gpu.0"


def test_without_affinity_the_most_free_memory_wins():
    workers = [worker("gpu.0", ("pose",), 1), worker("gpu.1", (), 6)]
    assert choose_queue("pose", workers, ["gpu.0"], affinity=False) == "gpu.1"


def test_among_holders_the_most_free_memory_wins():
    workers = [worker("gpu.0", ("pose",), 1), worker("gpu.1", ("pose",), 3), worker("gpu.2", (), 7)]
    assert choose_queue("pose", workers, []) == "gpu.1"


def test_what_the_event_already_sent_a_worker_counts_against_it():
    workers = [worker("gpu.0", (), 4), worker("gpu.1", (), 3)]
    assert choose_queue("depth", workers, [], reserved={"gpu.0": 2 * GB}) == "gpu.1"


def test_static_placement_before_any_worker_reports_is_stable():
    queues = ["gpu.0", "gpu.1"]
    first = choose_queue("clothing", [], queues)
    assert first in queues and all(choose_queue("clothing", [], queues) == first for _ in range(5))
    with pytest.raises(ValueError, match="DEVICE_QUEUES"):
        choose_queue("clothing", [], [])


def test_live_workers_drops_stale_and_expired_states(redis_client):
    fresh = {"worker": "cpu0@h", "queue": "cpu.0", "models": [{"name": "pose"}], "free_bytes": 5, "updated_at": 100.0}
    stale = fresh | {"worker": "cpu1@h", "queue": "cpu.1", "updated_at": 10.0}
    expired = fresh | {"worker": "cpu2@h", "queue": "cpu.2"}
    for state in (fresh, stale, expired):
        publish_state(redis_client, state["worker"], json.dumps(state), ttl_seconds=60)
    redis_client.delete("workers:state:cpu2@h")  # its TTL ran out
    states = live_workers(redis_client, max_age_seconds=30, now=105.0)
    assert [(s.queue, s.models) for s in states] == [("cpu.0", ("pose",))]
    assert redis_client.smembers(WORKER_INDEX) == {b"cpu0@h", b"cpu1@h"}, "expired names leave the index"
    withdraw_state(redis_client, "cpu0@h")
    assert live_workers(redis_client, max_age_seconds=30, now=105.0) == []


def test_finding_workers_does_not_scan_the_keyspace(redis_client):
    """Results and frames pile up in Redis; the router's lookup must not grow with them."""
    state = {"worker": "gpu0@h", "queue": "gpu.0", "models": [], "free_bytes": 1, "updated_at": 100.0}
    publish_state(redis_client, "gpu0@h", json.dumps(state), ttl_seconds=60)
    with redis_client.pipeline(transaction=False) as pipe:
        for n in range(5000):
            pipe.set(f"enrichment:e{n}", "{}")
        pipe.execute()
    before = redis_client.info("stats")["total_commands_processed"]
    assert [s.queue for s in live_workers(redis_client, max_age_seconds=30, now=101.0)] == ["gpu.0"]
    assert redis_client.info("stats")["total_commands_processed"] - before <= 3  # SMEMBERS, MGET, INFO
