"""The result store: the first result of an event stays; only the risk task adds to its own; nothing unstored is announced."""

from __future__ import annotations

import json
import time

from tasks.contract import SCHEMA_VERSION
from tasks.results import COMPLETED_CHANNEL, COMPLETION_STREAM, ResultStore, result_key
from tasks.router import rejection, rejection_id
from tasks.schemas import EnrichmentResult


def collect(client):
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(COMPLETED_CHANNEL)

    pubsub.get_message(timeout=1.0)  # the subscription's own confirmation

    def messages() -> list[dict]:
        found, deadline = [], time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if (message := pubsub.get_message(timeout=0.1)) is not None:
                found.append(json.loads(message["data"]))
        return found

    return messages


def test_a_stored_result_is_never_replaced(redis_client):
    store = ResultStore(redis_client, ttl_seconds=60)
    messages = collect(redis_client)
    first = store.save(EnrichmentResult(event_id="e1", status="complete", camera_id="front"))
    again = store.save(EnrichmentResult(event_id="e1", status="rejected", camera_id="attacker"))
    assert again == first and store.get("e1")["camera_id"] == "front"
    assert [m["status"] for m in messages()] == ["complete"], "the refused write is not announced"
    assert 0 < redis_client.ttl(result_key("e1")) <= 60


def test_the_risk_task_adds_to_its_own_result_but_never_creates_one(redis_client):
    store = ResultStore(redis_client, ttl_seconds=60)
    store.save(EnrichmentResult(event_id="e2", status="complete"))
    with_risk = store.add_to_own(EnrichmentResult(event_id="e2", status="complete", risk={"risk_score": 10}))
    assert store.get("e2") == with_risk
    store.add_to_own(EnrichmentResult(event_id="nobody", status="complete", risk={"risk_score": 10}))
    assert store.get("nobody") is None


def test_rejections_take_their_own_id_and_echo_the_given_one_safely():
    rejected = rejection({"event_id": "evt\n*é" + "x" * 500, "camera_id": "cam one"}, {"bbox": "bad"}, "task-1")
    assert rejected.event_id == "rejected-task-1"
    assert rejected.submitted_event_id.isascii() and len(rejected.submitted_event_id) <= 64
    assert rejected.camera_id is None, "a camera_id outside its pattern is not repeated"
    assert rejection_id("odd id\n*").startswith("rejected-") and "\n" not in rejection_id("odd id\n*")


def test_a_save_in_a_pipeline_stores_once_and_announces_once(redis_client):
    store = ResultStore(redis_client, ttl_seconds=60)
    messages = collect(redis_client)
    answers = []
    for status in ("complete", "partial"):
        with redis_client.pipeline(transaction=True) as pipe:
            saved = store.save_in(pipe, EnrichmentResult(event_id="e3", status=status))
            pipe.delete("frame:e3:full")
            answers.append(saved(pipe.execute()[0]))
    assert [a["status"] for a in answers] == ["complete", "complete"], "the second save hands back the first"
    assert [m["status"] for m in messages()] == ["complete"]
    assert 0 < redis_client.ttl(result_key("e3")) <= 60


def test_a_save_in_a_pipeline_costs_no_round_trip_of_its_own(redis_client):
    """The pipeline's one MULTI/EXEC carries the save: redis-py's SCRIPT EXISTS check is not sent before it."""
    store = ResultStore(redis_client, ttl_seconds=60)
    redis_client.config_resetstat()
    with redis_client.pipeline(transaction=True) as pipe:
        saved = store.save_in(pipe, EnrichmentResult(event_id="e4", status="complete"))
        assert saved(pipe.execute()[0])["status"] == "complete"
    sent = {name.removeprefix("cmdstat_") for name in redis_client.info("commandstats")}
    assert {"multi", "eval", "exec"} <= sent and not [name for name in sent if name.startswith("script")], sent


def stream_entries(client) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in client.xrange(COMPLETION_STREAM)]


def test_every_stored_result_and_rejection_is_appended_to_the_stream_once_in_the_same_step(redis_client):
    store = ResultStore(redis_client, ttl_seconds=60)
    store.save(EnrichmentResult(event_id="s1", status="complete"))
    store.save(EnrichmentResult(event_id="s1", status="partial"))  # refused: the first stays, nothing announced
    store.save(rejection({"event_id": "bad id"}, {"event_id": "bad"}, "task-9"))
    with redis_client.pipeline(transaction=True) as pipe:
        store.save_in(pipe, EnrichmentResult(event_id="s2", status="partial"))
        pipe.execute()
    assert stream_entries(redis_client) == [
        {"event_id": "s1", "status": "complete", "result_key": "enrichment:s1", "schema_version": SCHEMA_VERSION},
        {"event_id": "rejected-task-9", "status": "rejected", "result_key": "enrichment:rejected-task-9",
         "schema_version": SCHEMA_VERSION, "submitted_event_id": "bad id"},
        {"event_id": "s2", "status": "partial", "result_key": "enrichment:s2", "schema_version": SCHEMA_VERSION},
    ]


def test_the_stream_is_capped_near_its_maxlen(redis_client):
    store = ResultStore(redis_client, ttl_seconds=60, stream_maxlen=10)
    for n in range(300):
        store.save(EnrichmentResult(event_id=f"cap-{n}", status="complete"))
    kept = redis_client.xlen(COMPLETION_STREAM)
    assert 10 <= kept < 300, kept  # MAXLEN ~ trims whole radix-tree nodes: about the cap, never below it
    assert stream_entries(redis_client)[-1]["event_id"] == "cap-299", "the newest entries are the ones kept"


def test_the_risk_rewrite_is_announced_as_a_second_revision(redis_client):
    store = ResultStore(redis_client, ttl_seconds=60)
    store.save(EnrichmentResult(event_id="r1", status="complete"))
    store.add_to_own(EnrichmentResult(event_id="r1", status="complete", risk={"risk_score": 10}))
    store.add_to_own(EnrichmentResult(event_id="gone", status="complete", risk={"risk_score": 10}))
    assert [(e["event_id"], e.get("revision")) for e in stream_entries(redis_client)] == [("r1", None), ("r1", "2")]


def test_stored_results_and_rejections_carry_the_schema_version(redis_client):
    store = ResultStore(redis_client, ttl_seconds=60)
    store.save(EnrichmentResult(event_id="v1", status="complete"))
    store.save(rejection({"event_id": "v2"}, {"bbox": "bad"}, "task-v2"))
    assert store.get("v1")["schema_version"] == store.get("rejected-task-v2")["schema_version"] == SCHEMA_VERSION
