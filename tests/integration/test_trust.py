"""Issue 25 against the real pool: the public queue runs only what a backend may send, internal messages carry the
pool's signature, internal tasks trust the ledger, every message is bounded before it is decoded, no ETA parking,
a pixel budget per event, timestamps that always format, a sweeper no poison event stops, and duplicates that cost
nothing while they wait. Tests are named after the point they hold (test_point1_... to test_point7_...)."""

from __future__ import annotations

import datetime as dt
import json
import re
import statistics
import time
import urllib.request
import uuid
import zlib

import pytest
from celery import Celery
from celery.result import AsyncResult

from scripts.fixtures.sample_events import b64, person_event, vehicle_event
from scripts.hostile_figures import big_jpeg, publish_raw, reset_peaks, snapshot, task_headers, v2_body, worker_processes
from tasks.celery_internals import TRUSTED_TRANSPORT
from tests.integration.conftest import started_pool
from workers.settings import get_settings

pytestmark = pytest.mark.integration

KEY = "d3f1c0ffee" * 6  # the pool's POOL_SIGNING_KEY in this module (a test plays a holder of it in point 2)


@pytest.fixture(scope="module")
def trusted_pool(pool_models_dir, tmp_path_factory):
    with started_pool(pool_models_dir, tmp_path_factory.mktemp("trust-logs"),
                      {"POOL_SIGNING_KEY": KEY, "SWEEP_INTERVAL_SECONDS": "2"}) as running:
        assert running.client.enrich(vehicle_event(unique("warm-up")), timeout=300)["status"] == "complete"
        yield running


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def plain_app(url: str) -> Celery:
    return Celery("backend", broker=url, backend=url)


@pytest.fixture
def signing_app(trusted_pool, monkeypatch):
    """A Celery app that signs with the pool's key: what a pool process sends (or one that stole the key)."""
    monkeypatch.setenv("POOL_SIGNING_KEY", KEY)
    get_settings.cache_clear()
    app = Celery("keyed", broker=trusted_pool.redis_url, backend=trusted_pool.redis_url)
    app.conf.broker_transport = TRUSTED_TRANSPORT
    yield app
    app.close()
    get_settings.cache_clear()


def refused_count(pool, queue: str, reason: str) -> float:
    """model_zoo_messages_refused_total{queue, reason} from the /metrics of the worker consuming `queue`."""
    port = pool.metrics_base + (101 + int(queue.split(".")[1]) if queue.startswith("cpu.") else 0)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(rf'model_zoo_messages_refused_total{{queue="{re.escape(queue)}",reason="{reason}"}} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def answer_of(pool, task_id: str, timeout: float = 30) -> dict:
    return AsyncResult(task_id, app=pool.client.app).get(timeout=timeout)


def no_answer_within(pool, task_id: str, seconds: float) -> bool:
    try:
        AsyncResult(task_id, app=pool.client.app).get(timeout=seconds)
    except Exception:
        return True
    return False


def forged_routed_event(event_id: str, owned: list[str], group: str = "") -> dict:
    return {"event": {"event_id": event_id, "camera_id": "forged", "timestamp": "2026-01-01T00:00:00Z",
                      "detection_type": "vehicle", "confidence": 0.9, "bbox": [0, 0, 10, 10]},
            "planned": ["vehicle"], "placement": {}, "task_ids": {}, "group_id": group, "frame_key": owned[0],
            "owned_keys": owned, "frame_size": [10, 10], "received_at": time.time(), "routed_at": time.time()}


FORGED_RECORD = {"model": "vehicle", "status": "ok", "data": {"label": "tank", "confidence": 1.0}}


def router_peak_and_cpu(pool, reset: bool = False) -> tuple[float, float]:
    """The router worker's processes together: peak resident MB (VmHWM; with reset, the current size, peaks
    restarted from it) and CPU seconds so far."""
    if reset:
        reset_peaks(pool.process.pid)
    router = snapshot(pool.process.pid, peak=not reset)["router"]
    return sum(kb for kb, _ in router.values()) / 1024, sum(cpu for _, cpu in router.values())


# -- 1. the public queue runs only enrich_detection; internal messages must be signed -----------------------------
@pytest.mark.parametrize("queue", ["router", "celery"])
def test_point1_a_forged_internal_task_on_the_public_queue_is_refused_answered_and_counted(trusted_pool, queue):
    pool, redis = trusted_pool, trusted_pool.client.redis
    event_id = unique("p1-victim")
    stored = pool.client.enrich(vehicle_event(event_id), timeout=300)
    victim = f"backend:{unique('frame')}"
    redis.set(victim, b"a backend's frame", ex=600)
    before = {reason: refused_count(pool, queue, reason) for reason in ("not_public",)}
    app = plain_app(pool.redis_url)
    try:
        assemble = app.send_task("assemble", args=[[FORGED_RECORD], forged_routed_event(event_id, [victim])],
                                 queue=queue)
        run_model = app.send_task("run_model", args=[{"event_id": event_id, "model": "pet", "frame_key": victim,
                                                      "bbox": [0, 0, 9, 9], "detection_type": "animal",
                                                      "camera_id": "x"}], queue=queue)
        for pending, name in ((assemble, "assemble"), (run_model, "run_model")):
            answer = answer_of(pool, pending.id)
            assert answer["status"] == "rejected" and f"task '{name}' is not accepted" in answer["errors"]["task"]
    finally:
        app.close()
    assert redis.get(victim) == b"a backend's frame", "the key the forged event owned is still there"
    assert pool.client.stored(event_id) == stored, "the stored result is unchanged"
    assert not list(redis.scan_iter("workers:state:router*")), "the router never acted as a device worker"
    assert refused_count(pool, queue, "not_public") == before["not_public"] + 2


@pytest.mark.parametrize("queue, name", [("assemble", "assemble"), ("cpu.0", "run_model"), ("assemble",
                                                                                          "sweep_stalled_events")])
def test_point1_an_unsigned_message_on_an_internal_queue_is_refused_and_counted(trusted_pool, queue, name):
    pool, redis = trusted_pool, trusted_pool.client.redis
    event_id = unique("p1-internal")
    stored = pool.client.enrich(vehicle_event(event_id), timeout=300)
    victim = f"backend:{unique('frame')}"
    redis.set(victim, b"kept", ex=600)
    before = refused_count(pool, queue, "unsigned")
    args = {"assemble": [[FORGED_RECORD], event_id, "any group"],
            "run_model": [{"event_id": event_id, "model": "pet", "frame_key": victim, "bbox": [0, 0, 9, 9],
                           "detection_type": "animal", "camera_id": "x"}],
            "sweep_stalled_events": []}[name]
    app = plain_app(pool.redis_url)
    try:
        pending = app.send_task(name, args=args, queue=queue)
        assert no_answer_within(pool, pending.id, 3), "a forger is not answered"
    finally:
        app.close()
    assert refused_count(pool, queue, "unsigned") == before + 1
    assert pool.client.stored(event_id) == stored and redis.get(victim) == b"kept"
    assert "does not carry the pool's signature" in pool.log_tail(200)


# -- 2. internal tasks trust the ledger, not their message ---------------------------------------------------------
def ledger_entry(redis, event_id: str, group: str, frame_key: str) -> None:
    """An event in flight as the router leaves it: its frame, its ledger entry, its claim and deadline."""
    redis.set(frame_key, b"frame bytes", ex=600)
    routed = forged_routed_event(event_id, [frame_key], group) | {
        "event": {"event_id": event_id, "camera_id": "ledger_camera", "timestamp": "2026-01-01T00:00:00Z",
                  "detection_type": "vehicle", "confidence": 0.9, "bbox": [0, 0, 10, 10]}}
    redis.set(f"ledger:{event_id}", json.dumps(routed), ex=600)
    redis.set(f"claim:{event_id}", "1", ex=600)
    redis.zadd("ledger:deadlines", {event_id: time.time() + 600})


def test_point2_assembly_takes_the_event_and_its_keys_from_the_ledger(trusted_pool, signing_app):
    """Even a signed assemble (the key leaked, or a bug in the pool) changes nothing the ledger does not back."""
    pool, redis = trusted_pool, trusted_pool.client.redis
    event_id, group = unique("p2-ledger"), unique("group")
    frame_key, victim = f"frame:{event_id}:full", f"backend:{unique('frame')}"
    redis.set(victim, b"kept", ex=600)
    ledger_entry(redis, event_id, group, frame_key)

    as_object = signing_app.send_task("assemble", args=[[FORGED_RECORD], forged_routed_event(event_id, [victim])],
                                      queue="assemble")
    assert "error" in answer_of(pool, as_object.id), "a RoutedEvent in the message is refused"
    wrong_group = signing_app.send_task("assemble", args=[[FORGED_RECORD], event_id, "not-the-chord"],
                                        queue="assemble")
    assert answer_of(pool, wrong_group.id)["status"] == "partial"
    assert pool.client.stored(event_id) is None and redis.exists(frame_key) and redis.get(victim) == b"kept"

    stray = {"model": "clip", "status": "ok", "data": {"frame_embedding": [1.0]}}
    right = signing_app.send_task("assemble", args=[[FORGED_RECORD, stray], event_id, group], queue="assemble")
    result = answer_of(pool, right.id)
    assert result["camera_id"] == "ledger_camera", "the event is the ledger's"
    assert set(result["models"]) == {"vehicle"}, "a record for a model the router did not plan is dropped"
    assert pool.client.stored(event_id) == result
    assert not redis.exists(frame_key) and redis.get(victim) == b"kept", "only the ledger's owned keys are deleted"

    again = signing_app.send_task("assemble", args=[[dict(FORGED_RECORD, data={"label": "x"})], event_id, group],
                                  queue="assemble")
    answer_of(pool, again.id)
    assert pool.client.stored(event_id) == result, "an event with a stored result changes no more"
    nothing = unique("p2-none")
    absent = signing_app.send_task("assemble", args=[[FORGED_RECORD], nothing, group], queue="assemble")
    answer_of(pool, absent.id)
    assert pool.client.stored(nothing) is None, "no ledger entry: nothing is stored"


# -- 3. every message is bounded before it is decoded ---------------------------------------------------------
def test_point3_a_compressed_bomb_is_inflated_only_up_to_the_limit(trusted_pool):
    pool = trusted_pool
    body = zlib.compress(v2_body([{"event_id": "bomb", "padding": "0" * (512 * 1024 * 1024)}]), 9)
    peak, _ = router_peak_and_cpu(pool, reset=True)
    task_id = str(uuid.uuid4())
    publish_raw(pool.redis_url, "router", body, task_headers("enrich_detection", task_id),
                compression="application/x-gzip")
    answer = answer_of(pool, task_id)
    assert len(body) < 1024 * 1024 and "inflates to more than" in answer["errors"]["event"]
    rise = router_peak_and_cpu(pool)[0] - peak
    print(f"\n[point 3] zlib bomb of {len(body)} B (512 MB inflated): router peak memory +{rise:.0f} MB")
    assert rise < 200


@pytest.mark.parametrize("name", ["assemble", "await_result", "no_such_task"])
def test_point3_a_large_message_under_another_name_is_refused_unread(trusted_pool, name):
    pool = trusted_pool
    body = v2_body([[{"a": 0}] * (18 * 1024 * 1024 // 10)])
    peak, cpu = router_peak_and_cpu(pool, reset=True)
    task_id = str(uuid.uuid4())
    publish_raw(pool.redis_url, "router", body, task_headers(name, task_id))
    answer = answer_of(pool, task_id)
    assert answer["status"] == "rejected" and f"task '{name}' is not accepted" in answer["errors"]["task"]
    after_peak, after_cpu = router_peak_and_cpu(pool)
    print(f"\n[point 3] {len(body)} B under {name}: router peak memory +{after_peak - peak:.0f} MB, "
          f"CPU {after_cpu - cpu:.2f} s")
    assert after_peak - peak < 200


def test_point3_protocol_1_is_refused_before_decoding_and_answered(trusted_pool):
    pool = trusted_pool
    task_id = str(uuid.uuid4())
    body = json.dumps({"task": "enrich_detection", "id": task_id, "args": [[{"a": 0}] * 1_800_000],
                       "kwargs": {}}).encode()
    peak, _ = router_peak_and_cpu(pool, reset=True)
    publish_raw(pool.redis_url, "router", body, {})
    answer = answer_of(pool, task_id)
    assert answer["status"] == "rejected" and "protocol 1" in answer["errors"]["message"]
    assert router_peak_and_cpu(pool)[0] - peak < 200


@pytest.mark.parametrize("content_type, body, words", [
    ("application/x-yaml", b"- [{}]\n- {}\n- {}\n", "JSON only"),
    ("text/plain", b"hello", "JSON only"),
    ("application/json", b"{not json", "not valid JSON"),
])
def test_point3_not_json_is_refused_and_its_sender_answered(trusted_pool, content_type, body, words):
    pool = trusted_pool
    task_id = str(uuid.uuid4())
    publish_raw(pool.redis_url, "router", body, task_headers("enrich_detection", task_id), content_type=content_type)
    answer = answer_of(pool, task_id)
    assert answer["status"] == "rejected" and words in answer["errors"]["message"]
    assert len(pool.client.app.control.ping(timeout=2.0)) == 2


# -- 4. no ETA on the public queue ---------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [{"countdown": 86400}, {"eta": dt.datetime.now(dt.UTC) + dt.timedelta(days=1)}])
def test_point4_an_eta_or_countdown_is_refused_and_nothing_is_parked(trusted_pool, options):
    pool, redis = trusted_pool, trusted_pool.client.redis
    pending = pool.client.app.send_task("enrich_detection", args=[vehicle_event(unique("p4-eta"))], queue="router",
                                        **options)
    answer = pending.get(timeout=30)
    assert answer["status"] == "rejected" and "ETA or countdown is refused" in answer["errors"]["message"]
    parked = [raw for raw in redis.hvals("unacked") if pending.id.encode() in raw]
    assert not parked, "nothing of it waits in Redis's unacknowledged set"


# -- 5. a pixel budget per event -------------------------------------------------------------------------------------
def test_point5_frames_above_the_event_pixel_budget_are_refused_from_their_headers(trusted_pool):
    pool = trusted_pool
    jpeg = b64(big_jpeg(39_900_000))
    event = vehicle_event(unique("p5-budget")) | {"image": jpeg, "bbox": [10, 10, 2000, 2000],
                                                   "frames": [{"image": jpeg}] * 16}
    _, cpu = router_peak_and_cpu(pool)
    started = time.monotonic()
    answer = pool.client.enrich(event, timeout=60)
    took, used = time.monotonic() - started, router_peak_and_cpu(pool)[1] - cpu
    assert answer["status"] == "rejected" and "pixel budget" in answer["errors"]["frames"], answer["errors"]
    print(f"\n[point 5] 17 frames of 39.9 MP ({len(json.dumps(event))} B): refused in {took:.2f} s, router CPU {used:.2f} s")
    assert used < 2.0


def test_point5_an_event_at_the_budget_is_enriched_within_bounded_memory(trusted_pool):
    """A suspicious person with frames (action reads every buffered frame, the scene models the whole frame):
    47.8 MP in all, just under the default budget (48 MP)."""
    pool = trusted_pool
    warm = pool.client.enrich(person_event(unique("p5-warm"), suspicious=90, frames=2), timeout=300)
    assert "action" in warm["models"], "every model this event needs is loaded before it is measured"
    frame, buffered = b64(big_jpeg(16_000_000)), b64(big_jpeg(15_900_000))
    event = person_event(unique("p5-at-budget"), suspicious=90) | {
        "image": frame, "bbox": [100, 100, 1500, 3000], "face_visible": False,
        "frames": [{"image": buffered}] * 2}
    reset_peaks(pool.process.pid)
    device_before = snapshot(pool.process.pid, peak=False)["device"]
    _, cpu = router_peak_and_cpu(pool)
    result = pool.client.enrich(event, timeout=300)
    assert result["status"] in ("complete", "partial") and "action" in result["models"], result["errors"]
    device_after = snapshot(pool.process.pid)["device"]
    rise = sum(kb - device_before[pid][0] for pid, (kb, _) in device_after.items() if pid in device_before) / 1024
    router_cpu = router_peak_and_cpu(pool)[1] - cpu
    print(f"\n[point 5] 47.8 MP event: device worker peak memory +{rise:.0f} MB, router CPU {router_cpu:.2f} s")
    assert rise < 1536 and router_cpu < 3.0


# -- 6. timestamps; the sweeper and a poison event ----------------------------------------------------------------
@pytest.mark.parametrize("timestamp", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", -1])
def test_point6_an_out_of_range_timestamp_is_refused_naming_it(trusted_pool, timestamp):
    pool, redis = trusted_pool, trusted_pool.client.redis
    event = vehicle_event(unique("p6-time")) | {"timestamp": timestamp}
    answer = pool.client.enrich(event, timeout=60)
    assert answer["status"] == "rejected" and "timestamp" in answer["errors"], answer["errors"]
    assert not redis.exists(f"claim:{event['event_id']}") and not redis.exists(f"ledger:{event['event_id']}")


def test_point6_the_sweeper_finishes_every_overdue_event_when_some_raise(trusted_pool):
    pool, redis = trusted_pool, trusted_pool.client.redis
    corrupt, bad_join = unique("p6-corrupt"), unique("p6-join")
    good = [unique("p6-good") for _ in range(3)]
    overdue = time.time() - 60
    redis.set(f"ledger:{corrupt}", b"{not a routed event", ex=600)  # raises when read
    join = f"celery-taskset-meta-{bad_join}.j"  # the chord's join, of a type no Redis backend writes
    redis.hset(join, "x", "y")
    redis.expire(join, 600)
    for event_id in (bad_join, *good):
        ledger_entry(redis, event_id, bad_join if event_id == bad_join else "", f"frame:{event_id}:full")
    redis.zadd("ledger:deadlines", {corrupt: overdue - 2, bad_join: overdue - 1, **{e: overdue for e in good}})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(pool.client.stored(e) for e in good):
        time.sleep(0.5)
    for event_id in good:
        assert pool.client.stored(event_id)["status"] == "partial", event_id
    assert not redis.zscore("ledger:deadlines", corrupt) and not redis.zscore("ledger:deadlines", bad_join)
    later = unique("p6-later")  # the sweeper still runs: a later overdue event is finished too
    ledger_entry(redis, later, "", f"frame:{later}:full")
    redis.zadd("ledger:deadlines", {later: time.time() - 1})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not pool.client.stored(later):
        time.sleep(0.5)
    assert pool.client.stored(later)["status"] == "partial"
    assert "could not be swept" in pool.log_tail(2000)


# -- 7. duplicates of an event in flight cost nothing while they wait -----------------------------------------------
def rejection_round_trips(pool, samples: int = 30) -> list[float]:
    times = []
    for _ in range(samples):
        started = time.monotonic()
        assert pool.client.enrich({"event_id": "bad"}, timeout=30)["status"] == "rejected"
        times.append((time.monotonic() - started) * 1000)
    return times


def test_point7_three_hundred_waiting_duplicates_leave_the_router_idle(trusted_pool):
    pool, redis = trusted_pool, trusted_pool.client.redis
    event = vehicle_event(unique("p7-dup"))
    event_id = event["event_id"]
    redis.set(f"claim:{event_id}", "1", ex=600)  # the original, in flight
    pending = [pool.client.submit(event) for _ in range(300)]
    deadline = time.monotonic() + 120
    while redis.scard(f"waiters:{event_id}") < 300 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert redis.scard(f"waiters:{event_id}") == 300
    _, cpu = router_peak_and_cpu(pool)
    time.sleep(3)
    idle_cpu = router_peak_and_cpu(pool)[1] - cpu
    times = rejection_round_trips(pool)
    p50 = statistics.median(times)
    print(f"\n[point 7] 300 duplicates waiting: router CPU {idle_cpu:.2f} s in 3 s, rejection round trip p50 "
          f"{p50:.1f} ms")
    assert idle_cpu < 0.5 and p50 < 20
    redis.delete(f"claim:{event_id}")  # the original is lost; a later submission of the event completes it
    result = pool.client.enrich(event, timeout=300)
    assert result["status"] == "complete"
    answers = [p.get(timeout=60) for p in pending]
    assert all(answer == result for answer in answers), "every duplicate gets the event's result"
    assert not redis.exists(f"waiters:{event_id}")


def test_point7_duplicates_whose_original_never_finishes_are_answered_by_the_sweeper(trusted_pool):
    pool, redis = trusted_pool, trusted_pool.client.redis
    event = vehicle_event(unique("p7-lost"))
    redis.set(f"claim:{event['event_id']}", "1", ex=600)
    pending = pool.client.submit(event)
    deadline = time.monotonic() + 30
    while not redis.scard(f"waiters:{event['event_id']}") and time.monotonic() < deadline:
        time.sleep(0.2)
    redis.zadd("ledger:waiting", {event["event_id"]: time.time() - 1})  # their deadline has passed
    answer = pending.get(timeout=30)
    assert answer["status"] == "partial" and "never finished" in answer["errors"]["event_id"]


def test_every_worker_of_this_pool_runs_the_trusted_transport(trusted_pool):
    groups = worker_processes(trusted_pool.process.pid)
    assert groups["router"] and groups["device"]
    assert "Celery shortcuts on" in trusted_pool.log_path.read_text(errors="replace")
