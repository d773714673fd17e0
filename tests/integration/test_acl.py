"""The pool and a backend under the Redis ACL users of README "Security defaults" (tasks/trust.acl_rules), on a real
redis-server: the backend enriches events and reads results, and cannot write the pool's internal queues nor
delete, overwrite or read the pool's own keys."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis
from celery import Celery

from scripts.fixtures.sample_events import bus_photo, vehicle_event
from tasks.client import EnrichmentClient
from tasks.trust import acl_rules
from tests.integration.conftest import started_pool

pytestmark = pytest.mark.integration

POOL_PASSWORD, BACKEND_PASSWORD = "pool-" + uuid.uuid4().hex, "backend-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def acl_pool(pool_models_dir, tmp_path_factory):
    def pool_user(server):
        admin = server.client()
        for rule in acl_rules(POOL_PASSWORD, BACKEND_PASSWORD):
            admin.execute_command(*rule)
        admin.close()
        return f"redis://pool:{POOL_PASSWORD}@127.0.0.1:{server.port}/0"

    with started_pool(pool_models_dir, tmp_path_factory.mktemp("acl-logs"), url_of=pool_user) as running:
        running.backend_url = f"redis://backend:{BACKEND_PASSWORD}@127.0.0.1:{running.server.port}/0"
        yield running


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_the_default_user_is_off_and_the_backend_needs_its_password(acl_pool):
    port = acl_pool.backend_url.rsplit(":", 1)[1].split("/")[0]
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=int(port)).ping()
    assert redis.Redis.from_url(acl_pool.backend_url).ping()


def test_a_backend_user_enriches_events_and_reads_results(acl_pool):
    backend = EnrichmentClient(acl_pool.backend_url)
    completed = backend.redis.pubsub(ignore_subscribe_messages=True)
    completed.subscribe("enrichment.completed")
    try:
        event_id = unique("acl-client")
        result = backend.enrich(vehicle_event(event_id), timeout=300)
        assert result["status"] == "complete", result["errors"]
        assert backend.stored(event_id) == result, "the backend reads results"
        key = f"backend:{unique('frame')}"
        backend.redis.set(key, bus_photo(), ex=300)  # a frame sent by image_key, under the backend's own prefix
        by_key = {k: v for k, v in vehicle_event(unique("acl-key")).items() if k != "image"} | {"image_key": key}
        assert backend.enrich(by_key, timeout=300)["status"] == "complete"
        deadline, announced = time.monotonic() + 10, []
        while time.monotonic() < deadline and event_id not in announced:
            message = completed.get_message(timeout=0.5)
            if message:
                announced.append(json.loads(message["data"])["event_id"])
        assert event_id in announced, "the backend reads the completion channel"
    finally:
        completed.close()
        backend.close()


def test_a_backend_user_reads_the_completion_stream_with_its_consumer_group(acl_pool):
    backend = EnrichmentClient(acl_pool.backend_url)  # inline frames go up once, under frame-upload:*
    try:
        feed = backend.feed("acl-backend", "consumer-1", start="$")
        event_id = unique("acl-feed")
        assert backend.enrich(vehicle_event(event_id), timeout=300)["status"] == "complete"
        deadline, seen = time.monotonic() + 30, []
        while time.monotonic() < deadline and event_id not in [c.event_id for c in seen]:
            seen += feed.read(count=50, block_ms=1000)
        mine = [c for c in seen if c.event_id == event_id]
        assert mine and mine[0].status == "complete" and mine[0].result_key == f"enrichment:{event_id}"
        assert feed.ack(seen) == len(seen) and feed.pending() == 0
    finally:
        backend.close()


def test_a_backend_app_without_routes_sends_to_the_default_queue(acl_pool):
    app = Celery("backend", broker=acl_pool.backend_url, backend=acl_pool.backend_url)
    try:
        result = app.send_task("enrich_detection", args=[vehicle_event(unique("acl-plain"))]).get(timeout=300)
        assert result["status"] == "complete"
    finally:
        app.close()


@pytest.mark.parametrize("command", [
    ("LPUSH", "assemble", "x"), ("LPUSH", "cpu.0", "x"), ("LPUSH", "gpu.0", "x"), ("RPUSH", "router", "x"),
    ("DEL", "router"), ("DEL", "enrichment:any"), ("UNLINK", "celery-task-meta-any"), ("DEL", "backend:any"),
    ("SET", "enrichment:any", "forged"), ("SET", "celery-task-meta-any", "forged"), ("SET", "claim:any", "1"),
    ("GET", "ledger:any"), ("GET", "frame:any:full"), ("LRANGE", "router", "0", "-1"), ("HGETALL", "unacked"),
    ("PUBLISH", "/0.celery.pidbox", "x"), ("PUBLISH", "workers:commands:cpu0@host", "x"),
    ("PUBLISH", "enrichment.completed", "x"), ("EVAL", "return 1", "0"), ("FLUSHALL",), ("KEYS", "*"),
    ("SADD", "_kombu.binding.assemble", "x"), ("ACL", "LIST"),
    ("XADD", "enrichment.completed", "*", "event_id", "forged"), ("XTRIM", "enrichment.completed", "MAXLEN", "0"),
    ("DEL", "frame-upload:any"), ("GET", "frame-upload:any"),
])
def test_a_backend_user_cannot_write_internal_queues_nor_delete_or_touch_pool_keys(acl_pool, command):
    backend = redis.Redis.from_url(acl_pool.backend_url)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            backend.execute_command(*command)
    finally:
        backend.close()


def test_the_pool_user_cannot_administer_redis(acl_pool):
    pool_user = redis.Redis.from_url(acl_pool.redis_url)
    try:
        for command in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("ACL", "LIST"), ("SHUTDOWN",)):
            with pytest.raises(redis.exceptions.NoPermissionError):
                pool_user.execute_command(*command)
    finally:
        pool_user.close()
