"""Taken messages against kombu's own Redis transport and a real redis-server: put back at once, moved off a dead
queue, parked (not dropped) when Redis refuses their unacked record; claims that know their owner."""

from __future__ import annotations

import json

import pytest
from kombu import Connection

from tasks.celery_internals import deliveries
from tasks.celery_internals.unacked import UNACKED_INDEX_KEY, UNACKED_KEY, move_queued, move_taken, restore_taken
from tasks.ledger import Ledger, claim_key
from tasks.router import chord_ids
from tests.kombu_messages import direct_queue, drain_once, publish


@pytest.fixture
def broker(redis_server, redis_client):
    with Connection(redis_server.url, transport_options={"visibility_timeout": 3600}) as connection:
        yield connection


def take(connection: Connection, queue: str, count: int) -> list:
    """Take `count` messages without acknowledging them (they sit in kombu's unacked hash)."""
    taken = []
    target = direct_queue(queue)
    channel = connection.channel()
    for _ in range(count):
        message = target(channel).get(no_ack=False)
        assert message is not None
        taken.append(message)
    return taken


def test_kombu_keeps_taken_messages_where_this_code_reads_them(broker, redis_client):
    publish(broker, "cpu.0", [{"n": 1}])
    (message,) = take(broker, "cpu.0", 1)
    payload, exchange, routing_key = json.loads(redis_client.hget(UNACKED_KEY, message.delivery_tag))
    assert (exchange, routing_key) == ("cpu.0", "cpu.0") and payload["properties"]["delivery_tag"]
    assert redis_client.zscore(UNACKED_INDEX_KEY, message.delivery_tag) is not None


def test_taken_messages_not_held_go_back_at_once(broker, redis_client):
    publish(broker, "cpu.0", [{"n": n} for n in range(3)])
    publish(broker, "cpu.1", [{"n": 9}])
    held, *forgotten = take(broker, "cpu.0", 3)
    take(broker, "cpu.1", 1)  # another queue's: not this worker's to restore
    channel = broker.default_channel
    restored = restore_taken(channel, ["cpu.0"], mine=[held.delivery_tag])
    assert sorted(restored) == sorted(m.delivery_tag for m in forgotten)
    assert redis_client.llen("cpu.0") == 2 and redis_client.llen("cpu.1") == 0
    assert redis_client.hexists(UNACKED_KEY, held.delivery_tag), "a message the worker holds stays taken"
    assert restore_taken(channel, ["cpu.0"], mine=[held.delivery_tag]) == [], "nothing is put back twice"


def run_model_body(model: str) -> dict:
    return {"task": "run_model", "model": model}


def test_a_dead_queues_waiting_and_taken_messages_move_re_addressed(broker, redis_client):
    publish(broker, "gpu.2", [{"n": n} for n in range(3)])
    take(broker, "gpu.2", 1)  # its worker took one, then died
    moved_waiting = move_queued(redis_client, "gpu.2", lambda body: "gpu.0")
    moved_taken = move_taken(redis_client, {"gpu.2"}, lambda body: "gpu.1")
    assert (moved_waiting, moved_taken) == (2, {"gpu.2": 1})
    assert redis_client.llen("gpu.2") == 0 and redis_client.hlen(UNACKED_KEY) == 0
    for queue, count in (("gpu.0", 2), ("gpu.1", 1)):
        raws = redis_client.lrange(queue, 0, -1)
        assert len(raws) == count
        for raw in raws:
            info = json.loads(raw)["properties"]["delivery_info"]
            assert info["routing_key"] == queue and info["exchange"] == queue and info["redelivered"]
    # the re-addressed messages are consumed where they now are, and a later restore returns them there
    publish(broker, "gpu.0", [])
    (again,) = take(broker, "gpu.1", 1)
    assert json.loads(redis_client.hget(UNACKED_KEY, again.delivery_tag))[2] == "gpu.1"


def test_a_message_whose_unacked_record_redis_refuses_is_parked_and_put_back(broker, redis_client, redis_server):
    deliveries.install()
    deliveries.PARKING.client_factory = redis_server.client
    publish(broker, "cpu.0", [{"n": 1, "pad": "x" * 200_000}])
    received = []
    queue = direct_queue("cpu.0")
    try:
        with broker.Consumer(queue, callbacks=[lambda body, message: received.append(body)], accept=["json"]):
            channel = broker.default_channel
            used = redis_client.info("memory")["used_memory"]
            redis_client.config_set("maxmemory-policy", "noeviction")
            redis_client.config_set("maxmemory", str(used - 150_000))  # over: BRPOP works, the HSET is refused
            for _ in range(5):
                drain_once(broker, 0.5)
                if deliveries.PARKING.holding():
                    break
            assert deliveries.PARKING.holding() == 1 and received == [], "parked, not handed to the consumer"
            assert not channel.qos.can_consume(), "consuming pauses while a message is parked"
            assert redis_client.llen("cpu.0") == 0
            redis_client.config_set("maxmemory", "0")  # room again: the message goes back on its queue
            assert deliveries.PARKING.drain(10) == 0
            assert channel.qos.can_consume()
            broker.drain_events(timeout=5)
        assert received and received[0]["n"] == 1, "the parked message was delivered once room was made"
    finally:
        redis_client.config_set("maxmemory", "0")


def test_a_claim_knows_its_owner(redis_client):
    ledger = Ledger(redis_client)
    assert ledger.claim_or_wait("e1", "enrichment:e1", 60, owner="task-a") == (None, True)
    assert ledger.claim_or_wait("e1", "enrichment:e1", 60, owner="task-a") == (None, True), \
        "a redelivery of the same submission carries on"
    assert ledger.claim_or_wait("e1", "enrichment:e1", 60, owner="task-b") == (None, False), \
        "another submission of the id waits"
    assert redis_client.get(claim_key("e1")) == b"task-a"


def test_chord_ids_are_the_same_for_a_redelivered_submission_only():
    first = chord_ids("task-a", "e1", ["pose", "threat"])
    assert chord_ids("task-a", "e1", ["pose", "threat"]) == first
    assert len({first[0], *first[1].values()}) == 3
    assert chord_ids("task-b", "e1", ["pose"])[1]["pose"] != first[1]["pose"]
    assert chord_ids("task-a", "e2", ["pose"])[1]["pose"] != first[1]["pose"]


def test_acknowledging_works_on_a_full_redis(broker, redis_client):
    """kombu's ack is a MULTI, which Redis refuses whole at maxmemory; the worker must not die of it."""
    deliveries.install()
    publish(broker, "cpu.0", [{"n": 1, "pad": "x" * 200_000}])
    (message,) = take(broker, "cpu.0", 1)
    redis_client.set("ballast", b"x" * 1_000_000)
    used = redis_client.info("memory")["used_memory"]
    redis_client.config_set("maxmemory-policy", "noeviction")
    redis_client.config_set("maxmemory", str(used - 500_000))
    try:
        with pytest.raises(Exception, match="maxmemory"):
            redis_client.pipeline().zrem(UNACKED_INDEX_KEY, "x").execute()  # what kombu's own ack meets
        message.ack()
    finally:
        redis_client.config_set("maxmemory", "0")
    assert not redis_client.hexists(UNACKED_KEY, message.delivery_tag)
    assert redis_client.zscore(UNACKED_INDEX_KEY, message.delivery_tag) is None
