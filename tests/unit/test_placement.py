"""Placement: the live worker where a model would finish soonest (backlog against the cost of a load; the holder wins
ties, then free memory less what the event already sent), else static."""

from __future__ import annotations

import json

import pytest

from tasks.placement import choose_queue
from workers.state import WORKER_INDEX, WorkerState, live_workers, publish_state, withdraw_state

GB = 1024 ** 3


def worker(queue: str, models: tuple[str, ...], free_gb: float, updated_at: float = 1000.0, in_flight: int = 0,
           task_ms: float = 100.0, load_ms: float = 500.0) -> WorkerState:
    return WorkerState(worker=f"{queue}@host", queue=queue, device="cpu", models=models, used_bytes=0,
                       free_bytes=int(free_gb * GB), budget_bytes=8 * GB, updated_at=updated_at, in_flight=in_flight,
                       task_ms=task_ms, load_ms=tuple((m, load_ms) for m in models))


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
    assert choose_queue("depth", workers, [], reserved_bytes={"gpu.0": 2 * GB}) == "gpu.1"


def test_a_second_worker_is_used_once_the_holder_is_busier_than_a_load_costs():
    """Issue 28, point 5: 100 ms tasks, a 500 ms load: up to 5 tasks ahead the holder wins, past that the other."""
    idle_holder = [worker("gpu.0", ("pose",), 1, in_flight=4), worker("gpu.2", (), 6)]
    assert choose_queue("pose", idle_holder, []) == "gpu.0"
    busy_holder = [worker("gpu.0", ("pose",), 1, in_flight=4), worker("gpu.2", (), 6)]
    assert choose_queue("pose", busy_holder, [], backlog={"gpu.0": 3}) == "gpu.2", "7 tasks ahead: 0.7 s > 0.5 s"
    assert choose_queue("pose", busy_holder, [], backlog={"gpu.2": 20}) == "gpu.0", "the other is busier still"


def test_an_events_models_stay_together_until_they_outweigh_a_load():
    from tasks.placement import place_models

    workers = [worker("gpu.0", ("pose", "threat", "reid"), 4, in_flight=3), worker("gpu.2", (), 4)]
    placement = place_models(["pose", "threat", "reid"], workers, [], {}, backlog={"gpu.0": 0})
    assert set(placement.values()) == {"gpu.0"}
    crowded = place_models(["pose", "threat", "reid"], workers, [], {}, backlog={"gpu.0": 2})
    # pose: 0.5 s either way, the holder wins; threat: 0.6 s there against a 0.5 s load here; reid: 0.6 s both
    assert crowded == {"pose": "gpu.0", "threat": "gpu.2", "reid": "gpu.0"}, "the event's own tasks count as backlog"


def test_queue_backlog_reads_every_queue_in_one_round_trip(redis_client):
    from workers.state import queue_backlog

    redis_client.rpush("gpu.0", "a", "b")
    before = redis_client.info("stats")["total_commands_processed"]
    assert queue_backlog(redis_client, ["gpu.0", "gpu.1"]) == {"gpu.0": 2, "gpu.1": 0}
    assert redis_client.info("stats")["total_commands_processed"] - before <= 3  # two LLEN and INFO


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
