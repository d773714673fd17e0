"""Screening a message's raw bytes before decoding (message_bounds.screen), on messages sent by real Celery apps
through a real redis-server: the bytes screened are exactly what a worker pops off the list."""

from __future__ import annotations

import datetime as dt
import json
import zlib

import pytest
from celery import Celery

from tasks import trust
from tasks.celery_internals import TRUSTED_TRANSPORT, signing
from tasks.celery_internals.message_bounds import Policy, Refusal, inflate, screen
from workers.settings import get_settings

KEY = "k" * 64
LIMIT = 1024 * 1024


@pytest.fixture
def keyed(monkeypatch):
    monkeypatch.setenv("POOL_SIGNING_KEY", KEY)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def policy(key: str | None = KEY, limit: int = LIMIT) -> Policy:
    return Policy(max_body_bytes=limit, key=key.encode() if key else None, public_queues=trust.PUBLIC_QUEUES,
                  public_tasks=trust.PUBLIC_TASKS)


def sender(url: str, trusted: bool, **conf) -> Celery:
    app = Celery("sender", broker=url, backend=url)
    app.conf.update(broker_transport=TRUSTED_TRANSPORT if trusted else None, **conf)
    return app


def sent(redis_client, url: str, name: str, queue: str, trusted: bool = True, conf: dict | None = None,
         **options) -> bytes:
    """Send one task message and pop its raw bytes off the queue's list, as a worker's BRPOP would."""
    app = sender(url, trusted, **(conf or {}))
    try:
        app.send_task(name, args=options.pop("args", [{"event_id": "e1"}]), queue=queue, task_id="task-1", **options)
    finally:
        app.close()
    raw = redis_client.rpop(queue)
    assert raw is not None
    return raw


def test_a_message_the_pool_signed_passes_on_an_internal_queue(keyed, redis_client, redis_server):
    raw = sent(redis_client, redis_server.url, "assemble", "assemble")
    envelope = screen(raw, "assemble", policy())
    assert isinstance(envelope, dict) and envelope["headers"]["task"] == "assemble"
    assert envelope["headers"][signing.MAC_HEADER]


@pytest.mark.parametrize("tamper", ["body", "task", "eta"])
def test_a_tampered_signed_message_is_refused(keyed, redis_client, redis_server, tamper):
    envelope = json.loads(sent(redis_client, redis_server.url, "assemble", "assemble"))
    if tamper == "body":
        envelope["body"] = envelope["body"][:-8] + "AAAAAAA="
    elif tamper == "task":
        envelope["headers"]["task"] = "run_model"
    else:
        envelope["headers"]["eta"] = "2030-01-01T00:00:00"
    refusal = screen(json.dumps(envelope).encode(), "assemble", policy())
    assert isinstance(refusal, Refusal) and refusal.reason == "unsigned" and not refusal.answer


def test_a_signed_message_kombu_put_back_keeps_its_signature(keyed, redis_client, redis_server):
    """kombu marks a message it restores (a dead worker's, or after a reconnect) with a `redelivered` header."""
    envelope = json.loads(sent(redis_client, redis_server.url, "run_model", "cpu.0"))
    envelope["headers"]["redelivered"] = True
    envelope["properties"].setdefault("delivery_info", {})["redelivered"] = True
    assert isinstance(screen(json.dumps(envelope).encode(), "cpu.0", policy()), dict)


def test_an_unsigned_message_and_a_wrong_key_are_refused_on_internal_queues(keyed, redis_client, redis_server):
    unsigned = sent(redis_client, redis_server.url, "run_model", "gpu.0", trusted=False)
    assert screen(unsigned, "gpu.0", policy()).reason == "unsigned"
    signed = sent(redis_client, redis_server.url, "run_model", "cpu.3")
    assert screen(signed, "cpu.3", policy(key="another key")).reason == "unsigned"
    assert screen(signed, "cpu.3", policy(key=None)).reason == "unsigned", "no key configured: nothing passes"


def test_on_the_public_queue_only_enrich_detection_runs_and_the_sender_is_answered(keyed, redis_client, redis_server):
    for name in ("run_model", "assemble", "sweep_stalled_events", "celery.backend_cleanup"):
        refusal = screen(sent(redis_client, redis_server.url, name, "router", trusted=False), "router", policy())
        assert refusal.reason == "not_public" and refusal.field == "task" and refusal.answer
        assert refusal.task == name and refusal.task_id == "task-1"
    plain = sent(redis_client, redis_server.url, "enrich_detection", "celery", trusted=False)
    assert isinstance(screen(plain, "celery", policy()), dict), "a backend needs no key"


@pytest.mark.parametrize("options", [{"countdown": 3600}, {"eta": dt.datetime(2030, 1, 1, tzinfo=dt.UTC)}])
def test_an_eta_or_countdown_is_refused_on_the_public_queue(redis_client, redis_server, options):
    refusal = screen(sent(redis_client, redis_server.url, "enrich_detection", "router", trusted=False, **options),
                     "router", policy())
    assert refusal.reason == "eta" and refusal.answer and refusal.task_id == "task-1"


def test_protocol_1_is_refused_and_its_sender_found_in_the_body(redis_client, redis_server):
    raw = sent(redis_client, redis_server.url, "enrich_detection", "router", trusted=False, conf={"task_protocol": 1})
    refusal = screen(raw, "router", policy())
    assert refusal.reason == "protocol_1" and refusal.answer and refusal.task_id == "task-1"


def test_pickle_and_yaml_are_refused_and_answered(redis_client, redis_server):
    for serializer in ("pickle", "yaml"):
        raw = sent(redis_client, redis_server.url, "enrich_detection", "router", trusted=False,
                   conf={"task_serializer": serializer})
        refusal = screen(raw, "router", policy())
        assert refusal.reason == "content_type" and refusal.answer and refusal.task_id == "task-1"


def test_a_compressed_bomb_stops_inflating_at_the_limit(redis_client, redis_server):
    bomb = {"event_id": "e1", "padding": "0" * (8 * LIMIT)}
    raw = sent(redis_client, redis_server.url, "enrich_detection", "router", trusted=False, compression="zlib",
               args=[bomb])
    assert len(raw) < LIMIT // 10, "small on the wire"
    refusal = screen(raw, "router", policy())
    assert refusal.reason == "oversized" and refusal.field == "event" and "inflates" in refusal.problem
    fine = sent(redis_client, redis_server.url, "enrich_detection", "router", trusted=False, compression="bzip2")
    assert isinstance(screen(fine, "router", policy()), dict)


def test_inflate_refuses_unknown_and_corrupt_compression():
    with pytest.raises(ValueError, match="not accepted"):
        inflate(b"x", "application/x-brotli", 100)
    with pytest.raises(ValueError, match="truncated"):
        inflate(zlib.compress(b"a" * 1000)[:-6], "application/x-gzip", 10_000)
    assert inflate(zlib.compress(b"a" * 1000), "zlib", 1000) == b"a" * 1000


def test_an_oversized_message_is_refused_unparsed_and_its_sender_found_in_the_tail(redis_client, redis_server):
    raw = sent(redis_client, redis_server.url, "enrich_detection", "router", trusted=False,
               args=[{"event_id": "e1", "padding": "x" * (2 * LIMIT)}])
    refusal = screen(raw, "router", policy())
    assert refusal.reason == "oversized" and "MAX_EVENT_BYTES" in refusal.problem and refusal.task_id == "task-1"
    internal = screen(raw, "assemble", policy())
    assert internal.reason == "oversized" and not internal.answer, "forgers on internal queues are not answered"


def test_event_shape_bombs_are_refused_on_the_public_queue(redis_client, redis_server):
    raw = sent(redis_client, redis_server.url, "enrich_detection", "router", trusted=False,
               args=[{"event_id": "e1", "frames": [{}] * 10_000}])
    refusal = screen(raw, "router", policy())
    assert refusal.reason == "shape" and refusal.answer


def test_junk_on_a_queue_is_refused_without_an_answer():
    for junk in (b"not json", b"[1, 2]", b'{"body": 5, "headers": {}, "properties": {}}'):
        refusal = screen(junk, "router", policy())
        assert refusal.reason == "malformed" and not refusal.answer


def test_a_body_that_is_not_json_is_refused_on_the_public_queue_and_answered():
    envelope = {"body": "e25vdCBqc29u", "content-encoding": "utf-8", "content-type": "application/json",
                "headers": {"task": "enrich_detection", "id": "t-9"},
                "properties": {"body_encoding": "base64", "delivery_tag": "1"}}
    refusal = screen(json.dumps(envelope).encode(), "router", policy())
    assert refusal.reason == "not_json" and refusal.answer and refusal.task_id == "t-9"
