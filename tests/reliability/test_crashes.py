"""Workers killed mid-inference, poison events, stuck chords: every event still reaches a terminal result."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from workers.state import WORKER_STATE_PREFIX
from tasks.sample_events import person_event
from tests.reliability.conftest import CompletionCounter, report, wait_for_results

pytestmark = pytest.mark.integration


def device_child_pid(pool) -> int:
    """The device worker's prefork child, as it publishes itself in Redis."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for key in pool.client.redis.scan_iter(match=f"{WORKER_STATE_PREFIX}cpu0@*"):
            raw = pool.client.redis.get(key)
            if raw:
                return json.loads(raw)["pid"]
        time.sleep(0.2)
    raise AssertionError("the device worker never published its state")


def parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def test_sigkill_of_child_and_of_whole_worker_loses_nothing(make_pool):
    pool, server = make_pool({
        "CLOTHING_MODEL_FAMILY": "tests.fault_models:SlowModel", "SLOW_MODEL_SECONDS": "1.5",
        "VISIBILITY_TIMEOUT_SECONDS": "20", "MODEL_TIME_LIMIT": "15", "MODEL_SOFT_TIME_LIMIT": "12",
    })
    counter = CompletionCounter(server.url)
    events = [person_event(f"kill-{n}") for n in range(6)]
    child = device_child_pid(pool)
    for event in events:
        pool.client.submit(event)
    time.sleep(3)
    os.kill(child, signal.SIGKILL)  # the prefork child, mid-inference: its task is rejected and requeued
    new_child = device_child_pid(pool)
    deadline = time.monotonic() + 30
    while new_child == child and time.monotonic() < deadline:
        time.sleep(0.5)
        new_child = device_child_pid(pool)
    time.sleep(2)
    os.kill(parent_pid(new_child), signal.SIGKILL)  # the whole worker: its unacked tasks return after the timeout
    results = wait_for_results(pool, [e["event_id"] for e in events], timeout=240)
    time.sleep(1)
    counter.close()
    report("worker killed", len(events), results, counter.counts)
    assert len(results) == len(events), "every event reaches a terminal result"
    assert all(r["status"] in ("complete", "partial") for r in results.values())
    assert all(n == 1 for n in counter.counts.values()), f"one result per event: {counter.counts}"


def test_poison_event_gives_up_after_the_redelivery_cap(make_pool):
    pool, _ = make_pool({"CLOTHING_MODEL_FAMILY": "tests.fault_models:SuicidalModel", "MAX_DELIVERIES": "2"})
    event = person_event("poison")
    result = pool.client.enrich(event, timeout=240)
    report("poison event", 1, {event["event_id"]: result})
    assert result["status"] == "partial"
    clothing = result["models"]["clothing"]
    assert clothing["status"] == "error" and "gave up after 2 deliveries" in clothing["error"]
    assert result["models"]["reid"]["status"] == "ok", "the other models of the event still ran"


def test_stuck_chord_is_finished_by_the_sweeper(make_pool):
    deadline_seconds, sweep_seconds = 20, 2
    pool, _ = make_pool({
        "POSE_MODEL_FAMILY": "tests.fault_models:StubbornModel", "MODEL_SOFT_TIME_LIMIT": "8",
        "MODEL_TIME_LIMIT": "10", "EVENT_DEADLINE_SECONDS": str(deadline_seconds),
        "SWEEP_INTERVAL_SECONDS": str(sweep_seconds),
    })
    event = person_event("stuck")
    started = time.monotonic()
    pool.client.submit(event)  # its chord breaks: the hard time limit kills the child running pose
    results = wait_for_results(pool, [event["event_id"]], timeout=120)
    elapsed = time.monotonic() - started
    report("stuck chord", 1, results)
    result = results[event["event_id"]]
    assert result["status"] == "partial"
    assert "sweeper" in result["models"]["pose"]["error"]
    # threat runs before pose (priority order, one worker, one task at a time), so it finished in time
    assert result["models"]["threat"]["status"] == "ok", "finished records are kept"
    for name, record in result["models"].items():
        assert record["status"] == "ok" or "sweeper" in record["error"], (name, record)
    assert elapsed < deadline_seconds + 4 * sweep_seconds + 30, f"finished within a bounded time ({elapsed:.1f}s)"


def test_duplicate_submissions_are_computed_once(make_pool):
    pool, server = make_pool({})
    counter = CompletionCounter(server.url)
    event = person_event("dup")
    pending = [pool.client.submit(event) for _ in range(5)]
    answers = [p.get(timeout=240) for p in pending]
    again = pool.client.enrich(event, timeout=60)
    time.sleep(1)
    counter.close()
    report("duplicates: 6 submissions of one event", 1, {event["event_id"]: again}, counter.counts)
    assert all(a == answers[0] for a in answers + [again])
    assert counter.counts[event["event_id"]] == 1, "computed and announced once"
