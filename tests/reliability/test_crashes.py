"""Workers killed mid-inference, poison events, stuck chords: every event still reaches a terminal result."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from scripts.fixtures.sample_events import person_event
from tests.reliability.conftest import CompletionCounter, report, wait_for_results
from workers.state import WORKER_STATE_PREFIX

pytestmark = pytest.mark.integration


def device_pid(pool, other_than: int | None = None) -> int:
    """The process running the device worker's tasks (the threads worker, or the prefork child), as it publishes."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for key in pool.client.redis.scan_iter(match=f"{WORKER_STATE_PREFIX}cpu0@*"):
            raw = pool.client.redis.get(key)
            if raw and json.loads(raw)["pid"] != other_than:
                return json.loads(raw)["pid"]
        time.sleep(0.2)
    raise AssertionError("the device worker never published its state")


def parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


SLOW = {"CLOTHING_MODEL_FAMILY": "tests.fault_models:SlowModel", "SLOW_MODEL_SECONDS": "1.5",
        "MODEL_TIME_LIMIT": "15", "MODEL_SOFT_TIME_LIMIT": "12"}


def assert_every_event_once(pool, server, events, kill) -> None:
    """Submit the events, kill() mid-inference, and check each event ends once, complete or partial."""
    counter = CompletionCounter(server.url)
    for event in events:
        pool.client.submit(event)
    kill()
    results = wait_for_results(pool, [e["event_id"] for e in events], timeout=240)
    time.sleep(1)
    counter.close()
    report("worker killed", len(events), results, counter.counts)
    assert len(results) == len(events), "every event reaches a terminal result"
    assert all(r["status"] in ("complete", "partial") for r in results.values())
    assert all(n == 1 for n in counter.counts.values()), f"one result per event: {counter.counts}"


def test_sigkill_of_the_threads_worker_mid_inference_loses_nothing(make_pool):
    """The whole device worker dies twice: the supervisor restarts it and it takes its unacked tasks back at once."""
    pool, server = make_pool(SLOW)  # VISIBILITY_TIMEOUT_SECONDS stays an hour: nothing waits for it

    def kill() -> None:
        first = device_pid(pool)
        time.sleep(3)
        os.kill(first, signal.SIGKILL)
        second = device_pid(pool, other_than=first)
        time.sleep(2)
        os.kill(second, signal.SIGKILL)

    started = time.monotonic()
    assert_every_event_once(pool, server, [person_event(f"kill-{n}") for n in range(6)], kill)
    assert time.monotonic() - started < 120, "the dead worker's tasks came back without a visibility timeout"


def test_sigkill_of_prefork_child_and_of_whole_worker_loses_nothing(make_pool):
    pool, server = make_pool(SLOW, pool="prefork")

    def kill() -> None:
        child = device_pid(pool)
        time.sleep(3)
        os.kill(child, signal.SIGKILL)  # the prefork child, mid-inference: its task is rejected and requeued
        new_child = device_pid(pool, other_than=child)
        time.sleep(2)
        os.kill(parent_pid(new_child), signal.SIGKILL)  # the whole worker: restarted, it restores its unacked tasks

    assert_every_event_once(pool, server, [person_event(f"killp-{n}") for n in range(6)], kill)


@pytest.mark.parametrize("pool_kind", ["threads", "prefork"])
def test_poison_event_gives_up_after_the_redelivery_cap(make_pool, pool_kind):
    pool, _ = make_pool({"CLOTHING_MODEL_FAMILY": "tests.fault_models:SuicidalModel", "MAX_DELIVERIES": "2"},
                        pool=pool_kind)
    event = person_event(f"poison-{pool_kind}")
    result = pool.client.enrich(event, timeout=240)
    report(f"poison event ({pool_kind})", 1, {event["event_id"]: result})
    assert result["status"] == "partial"
    clothing = result["models"]["clothing"]
    assert clothing["status"] == "error" and "gave up after 2 deliveries" in clothing["error"]
    assert result["models"]["reid"]["status"] == "ok", "the other models of the event still ran"


def test_stuck_chord_is_finished_by_the_sweeper(make_pool):
    """Under prefork a model that ignores the soft limit is killed by the hard one and its chord never completes."""
    deadline_seconds, sweep_seconds = 20, 2
    pool, _ = make_pool({
        "POSE_MODEL_FAMILY": "tests.fault_models:StubbornModel", "MODEL_SOFT_TIME_LIMIT": "8",
        "MODEL_TIME_LIMIT": "10", "EVENT_DEADLINE_SECONDS": str(deadline_seconds),
        "SWEEP_INTERVAL_SECONDS": str(sweep_seconds),
    }, pool="prefork")
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


def test_a_stuck_model_times_out_and_the_watchdog_replaces_the_worker(make_pool):
    """In a threads pool the event ends at the soft limit; past the hard limit the watchdog ends the process."""
    pool, _ = make_pool({"POSE_MODEL_FAMILY": "tests.fault_models:StubbornModel", "MODEL_SOFT_TIME_LIMIT": "4",
                         "MODEL_TIME_LIMIT": "8"})
    first_pid = device_pid(pool)
    started = time.monotonic()
    result = pool.client.enrich(person_event("stubborn-1"), timeout=120)
    assert time.monotonic() - started < 30
    assert result["status"] == "partial"
    assert result["models"]["pose"]["status"] == "timeout" and "soft time limit" in result["models"]["pose"]["error"]
    assert result["models"]["threat"]["status"] == "ok" and result["models"]["clothing"]["status"] == "ok"
    second_pid = device_pid(pool, other_than=first_pid)  # the watchdog ended the stuck process; a new one serves
    assert second_pid != first_pid
    assert "past the 8 s hard time limit" in pool.log_tail(400)
    again = pool.client.enrich(person_event("stubborn-2"), timeout=120)
    assert again["models"]["clothing"]["status"] == "ok" and again["models"]["pose"]["status"] == "timeout"


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
