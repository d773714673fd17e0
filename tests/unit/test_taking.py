"""The pool's channel takes a message in one step Redis does whole (tasks/celery_internals/taking.py), against a real
redis-server: a consumer killed right after the take loses nothing, a refused message leaves no trace, a take works
on a full Redis, and an idle consumer wakes at once for a message published through the pool's channel."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
from kombu import Connection

from tasks.celery_internals import deliveries, taking
from tasks.celery_internals.unacked import UNACKED_KEY, restore_unrecorded
from tests.kombu_messages import direct_queue, drain_once, publish

TRANSPORT = "tasks.celery_internals.trusted_transport:Transport"
QUEUE = "work.q"  # not one of the pool's task queues: delivered unscreened


@pytest.fixture
def broker(redis_server, redis_client):
    with Connection(redis_server.url, transport=TRANSPORT, transport_options={"visibility_timeout": 3600}) as conn:
        yield conn


def consume(connection: Connection, queue: str, until: int, timeout: float = 5.0) -> list:
    received: list = []
    target = direct_queue(queue)
    with connection.Consumer(target, callbacks=[lambda body, message: received.append((body, message))],
                             accept=["json"]):
        deadline = time.monotonic() + timeout
        while len(received) < until and time.monotonic() < deadline:
            drain_once(connection, 0.2)
    return received


KILLED_AFTER_THE_TAKE = textwrap.dedent("""
    import os, signal, sys
    from kombu import Connection, Exchange, Queue
    from kombu.transport import redis as kombu_redis
    def die(self, message, queue):  # what kill -9 does between the take's reply and kombu's unacked record
        os.kill(os.getpid(), signal.SIGKILL)
    kombu_redis.Transport._deliver = die
    transport = sys.argv[2] if len(sys.argv) > 2 else None
    with Connection(sys.argv[1], transport=transport) as connection:
        queue = Queue("work.q", Exchange("work.q"), routing_key="work.q")
        with connection.Consumer(queue, callbacks=[lambda body, message: None], accept=["json"]):
            connection.drain_events(timeout=10)
""")


def killed_after_the_take(url: str, transport: str | None) -> int:
    args = [sys.executable, "-c", KILLED_AFTER_THE_TAKE, url] + ([transport] if transport else [])
    return subprocess.run(args, timeout=60, capture_output=True).returncode


def test_a_consumer_killed_after_the_take_loses_nothing(broker, redis_client, redis_server):
    publish(broker, QUEUE, [{"n": 1}])
    assert killed_after_the_take(redis_server.url, TRANSPORT) == -9
    assert redis_client.llen(QUEUE) == 0 and redis_client.hlen(UNACKED_KEY) == 0, "taken and never recorded"
    assert redis_client.llen(taking.taking_key(QUEUE)) == 1, "the message waits in its taking list"

    channel = broker.default_channel
    assert restore_unrecorded(channel, [QUEUE]) == 1
    assert redis_client.llen(taking.taking_key(QUEUE)) == 0
    (body, message), = consume(broker, QUEUE, until=1)
    assert body == {"n": 1}
    assert redis_client.llen(taking.taking_key(QUEUE)) == 0 and redis_client.hexists(UNACKED_KEY, message.delivery_tag)
    message.ack()
    assert restore_unrecorded(channel, [QUEUE]) == 0, "nothing is put back twice"


def test_kombus_own_brpop_loses_the_message_in_the_same_kill(broker, redis_client, redis_server):
    """Why the take changed (issue 28): the same kill with kombu's own transport leaves the message nowhere."""
    publish(broker, QUEUE, [{"n": 1}])
    assert killed_after_the_take(redis_server.url, None) == -9
    assert redis_client.llen(QUEUE) == 0 and redis_client.hlen(UNACKED_KEY) == 0
    assert redis_client.llen(taking.taking_key(QUEUE)) == 0


def test_a_recorded_message_leaves_its_taking_list_in_the_same_step(broker, redis_client):
    publish(broker, QUEUE, [{"n": n} for n in range(5)])
    received = consume(broker, QUEUE, until=5)
    assert sorted(body["n"] for body, _ in received) == list(range(5))
    assert redis_client.llen(taking.taking_key(QUEUE)) == 0
    assert redis_client.hlen(UNACKED_KEY) == 5
    for _, message in received:
        message.ack()
    assert redis_client.hlen(UNACKED_KEY) == 0


def test_a_refused_message_leaves_no_trace(broker, redis_client):
    """An unsigned message on a pool queue is refused unread: off its queue, out of its taking list, never taken."""
    redis_client.lpush("router", json.dumps({"body": "e30=", "headers": {"task": "enrich_detection", "id": "x"},
                                             "properties": {"delivery_info": {"routing_key": "router"}}}))
    assert consume(broker, "router", until=1, timeout=1.5) == []
    assert redis_client.llen("router") == 0 and redis_client.llen(taking.taking_key("router")) == 0
    assert redis_client.hlen(UNACKED_KEY) == 0


def test_a_message_whose_record_a_full_redis_refuses_stays_in_its_taking_list_until_put_back(
        broker, redis_client, redis_server):
    deliveries.install()
    deliveries.PARKING.client_factory = redis_server.client
    publish(broker, QUEUE, [{"n": 1, "pad": "x" * 200_000}])
    received = []
    queue = direct_queue(QUEUE)
    try:
        with broker.Consumer(queue, callbacks=[lambda body, message: received.append(body)], accept=["json"]):
            used = redis_client.info("memory")["used_memory"]
            redis_client.config_set("maxmemory-policy", "noeviction")
            redis_client.config_set("maxmemory", str(used - 150_000))  # over: the take works, the record is refused
            for _ in range(10):
                drain_once(broker, 0.5)
                if deliveries.PARKING.holding() or redis_client.llen(QUEUE):
                    break
            assert received == [] and redis_client.hlen(UNACKED_KEY) == 0
            # put back at once (the put-back pops before it pushes, so a full Redis runs it too), or still parked
            assert deliveries.PARKING.drain(10) == 0
            assert redis_client.llen(taking.taking_key(QUEUE)) == 0 and redis_client.llen(QUEUE) == 1
            redis_client.config_set("maxmemory", "0")
            broker.drain_events(timeout=5)
        assert received and received[0]["n"] == 1, "delivered once Redis had room"
    finally:
        redis_client.config_set("maxmemory", "0")


def test_a_take_says_whether_more_waits_so_a_busy_worker_never_waits(redis_client):
    keys = [QUEUE, QUEUE + "\x06\x163", "other.q"]
    redis_client.rpush("other.q", b"c")
    redis_client.rpush(QUEUE, b"a", b"b")
    takes = [redis_client.eval(taking.TAKE_SCRIPT, *taking.take_args(keys, [QUEUE, "other.q"])) for _ in range(4)]
    assert takes == [[QUEUE.encode(), b"b", 1], [QUEUE.encode(), b"a", 1], [b"other.q", b"c", 0], None]
    assert redis_client.lrange(taking.taking_key(QUEUE), 0, -1) == [b"a", b"b"], "until kombu records them"


def test_the_take_runs_on_a_full_redis(redis_client):
    redis_client.rpush(QUEUE, b"m1")
    redis_client.lpush(taking.wake_key(QUEUE), 1)  # rung before Redis filled up
    redis_client.set("ballast", b"x" * 1_000_000)
    used = redis_client.info("memory")["used_memory"]
    redis_client.config_set("maxmemory-policy", "noeviction")
    redis_client.config_set("maxmemory", str(used - 500_000))
    try:
        with pytest.raises(Exception, match="maxmemory"):
            redis_client.lmove(QUEUE, "elsewhere")  # what a plain atomic move meets at maxmemory
        assert redis_client.eval(taking.TAKE_SCRIPT, *taking.take_args([QUEUE], [QUEUE])) == [QUEUE.encode(), b"m1", 0]
        assert not redis_client.exists(taking.wake_key(QUEUE)), "the take empties the doorbell it woke on"
        assert taking.put_back(redis_client, QUEUE, b"m1") is True
        assert taking.put_back(redis_client, QUEUE, b"m1") is False, "only what is still taken goes back"
    finally:
        redis_client.config_set("maxmemory", "0")
    assert redis_client.lrange(QUEUE, 0, -1) == [b"m1"]


def test_an_idle_consumer_wakes_at_once_for_a_pool_publish_and_soon_for_any_other(broker, redis_client):
    target = direct_queue(QUEUE)
    arrived: list[float] = []
    waits = {}
    with broker.Consumer(target, callbacks=[lambda body, message: arrived.append(time.perf_counter())],
                         accept=["json"]):
        channel = broker.default_channel
        channel.take_wait_seconds = 2.0  # long, so that a doorbell's wake shows
        for how in ("pool", "outside"):
            start = len(arrived)
            for _ in range(3):  # idle: the last take found nothing, so the next poll waits on the doorbell
                drain_once(broker, 0.3)
            sent = time.perf_counter()
            if how == "pool":
                publish(broker, QUEUE, [{"n": 1}])  # through the pool's channel: rings the doorbell
            else:
                redis_client.lpush(QUEUE, json.dumps({"body": json.dumps({"n": 2}), "content-type":
                                   "application/json", "content-encoding": "utf-8", "headers": {},
                                   "properties": {"delivery_tag": "t-outside", "delivery_info": {
                                       "exchange": QUEUE, "routing_key": QUEUE}, "body_encoding": None}}))
            while len(arrived) == start and time.perf_counter() - sent < 5:
                drain_once(broker, 0.2)
            waits[how] = arrived[-1] - sent
        publish(broker, "nobody.q", [{"n": n} for n in range(5)])
        assert redis_client.llen(taking.wake_key("nobody.q")) == 1, "a doorbell nobody answers holds one token"
    assert waits["pool"] < 0.5, waits
    assert waits["outside"] < 2.0 + 0.5, waits


def test_a_message_that_cannot_be_delivered_is_dropped_not_taken_again(broker, redis_client, monkeypatch):
    """As kombu's BRPOP did: an error that is not Redis's leaves the message out of its queue and its taking list."""
    publish(broker, QUEUE, [{"n": 1}])
    target = direct_queue(QUEUE)
    with broker.Consumer(target, callbacks=[lambda body, message: None], accept=["json"]):
        def undeliverable(message, queue):
            raise ValueError("not a message this consumer can read")

        monkeypatch.setattr(broker.transport, "_deliver", undeliverable)
        with pytest.raises(ValueError):
            for _ in range(10):
                drain_once(broker, 0.3)
    assert redis_client.llen(QUEUE) == 0 and redis_client.llen(taking.taking_key(QUEUE)) == 0
    assert redis_client.hlen(UNACKED_KEY) == 0
