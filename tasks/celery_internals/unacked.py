"""kombu's unacked messages read and put back directly: a worker's own at once after a restart or a reconnect, and
a dead device worker's moved to a live worker's queue.

kombu's Redis transport keeps every message a worker has taken in the `unacked` hash (tag -> [message, exchange,
routing key]) and the `unacked_index` sorted set (tag -> when it was taken) until it is acknowledged. On its own it
puts them back only after VISIBILITY_TIMEOUT_SECONDS (an hour), or when the channel closes cleanly, which fails while
Redis is down: after a Redis restart a worker's prefetched messages waited that hour (issue 28). The functions here
read those two keys, which kombu 5.7 names and shapes as above (tests/unit/test_unacked.py checks them against
kombu itself).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

log = logging.getLogger(__name__)

UNACKED_KEY = "unacked"  # kombu's defaults (transport options unacked_key / unacked_index_key, not set by the pool)
UNACKED_INDEX_KEY = "unacked_index"
CHUNK = 200


def taken_entries(client: redis.Redis, older_than: float = 0.0, skip: Iterable[str] = (),
                  unacked_key: str = UNACKED_KEY, index_key: str = UNACKED_INDEX_KEY) -> dict[str, tuple[str, str]]:
    """{delivery tag: (exchange, routing key)} of the unacked messages taken at least `older_than` seconds ago,
    leaving out the tags in `skip`."""
    skip = set(skip)
    ceiling = time.time() - older_than
    tags = [t.decode() if isinstance(t, bytes) else t for t in client.zrangebyscore(index_key, "-inf", ceiling)]
    tags = [t for t in tags if t not in skip]
    entries: dict[str, tuple[str, str]] = {}
    for start in range(0, len(tags), CHUNK):
        chunk = tags[start:start + CHUNK]
        for tag, raw in zip(chunk, client.hmget(unacked_key, chunk)):
            if raw is None:
                continue
            try:
                _, exchange, routing_key = json.loads(raw)
            except (ValueError, TypeError):
                continue
            entries[tag] = (exchange, routing_key)
    return entries


def restore_taken(channel: Any, queues: Iterable[str], mine: Iterable[str] = (), older_than: float = 0.0) -> list[str]:
    """Put back at the head of their queues the unacked messages of `queues` that are not `mine` (the tags this
    worker holds now); their delivery tags. Only for queues this worker consumes alone."""
    queues = set(queues)
    restored = []
    with channel.conn_or_acquire() as client:  # a synchronous client (channel.client is the polling one)
        entries = taken_entries(client, older_than, mine, channel.unacked_key, channel.unacked_index_key)
        for tag, (exchange, routing_key) in entries.items():
            if routing_key in queues or exchange in queues:
                channel.qos.restore_by_tag(tag, client=client)  # kombu's own: one WATCH/MULTI, head of the queue
                restored.append(tag)
    return restored


def restore_unrecorded(channel: Any, queues: Iterable[str]) -> int:
    """Put back on `queues` the messages their taking lists hold (taken, never recorded in `unacked`); how many."""
    from tasks.celery_internals import taking

    if not hasattr(channel, "taken_now"):  # kombu's own channel takes with BRPOP: it has no taking lists
        return 0
    with channel.conn_or_acquire() as client:
        return sum(taking.restore(client, taking.queue_keys(channel, queues)).values())


def held_tags(consumer: Any) -> set[str]:
    """Delivery tags this worker holds: its channel's delivered-and-unacknowledged messages and the requests still
    running (from a channel before a reconnect)."""
    from celery.worker import state

    tags: set[str] = set()
    channel = getattr(getattr(consumer, "task_consumer", None), "channel", None)
    qos = getattr(channel, "qos", None)
    if qos is not None:
        tags.update(str(tag) for tag in list(qos._delivered))
    for request in list(state.active_requests) + list(state.reserved_requests):
        message = getattr(request, "message", None)
        if message is not None and message.delivery_tag is not None:
            tags.add(str(message.delivery_tag))
    return tags


# -- moving a dead worker's work ------------------------------------------------------------------------------------
def decoded_body(payload: dict[str, Any]) -> Any:
    """The task message's body (Celery protocol 2: [args, kwargs, embed]), or None when it cannot be read."""
    body = payload.get("body")
    try:
        if (payload.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        return json.loads(body)
    except (ValueError, TypeError):
        return None


def readdressed(raw: bytes | str, queue: str) -> tuple[str, Any]:
    """The message re-addressed to `queue` (exchange and routing key: a later restore returns it there), marked
    redelivered, as JSON; and its decoded body."""
    payload = json.loads(raw)
    info = payload.setdefault("properties", {}).setdefault("delivery_info", {})
    info["exchange"], info["routing_key"], info["redelivered"] = queue, queue, True
    if isinstance(payload.get("headers"), dict):
        payload["headers"]["redelivered"] = True
    return json.dumps(payload), decoded_body(payload)


Pick = Callable[[Any], str]  # decoded body -> the queue it goes to


def move_queued(client: redis.Redis, source: str, pick: Pick, limit: int = 1000) -> int:
    """Move up to `limit` waiting messages from `source` to the queues `pick` names; how many moved."""
    moved = 0
    while moved < limit:
        with client.pipeline() as pipe:
            try:
                pipe.watch(source)
                raw = pipe.lindex(source, -1)  # the oldest: the next BRPOP would take it
                if raw is None:
                    return moved
                message, body = readdressed(raw, "")
                target = pick(body)
                message, _ = readdressed(raw, target)
                pipe.multi()
                pipe.rpop(source)
                pipe.rpush(target, message)
                pipe.execute()
                moved += 1
            except redis.WatchError:
                continue
    return moved


def move_taken(client: redis.Redis, sources: set[str], pick: Pick, unacked_key: str = UNACKED_KEY,
               index_key: str = UNACKED_INDEX_KEY) -> dict[str, int]:
    """Move the unacked messages routed to any of `sources` (taken by their dead workers) to the queues `pick`
    names, each in one WATCH/MULTI (none is lost or doubled if its worker acknowledges it meanwhile); how many
    moved per source."""
    moved: dict[str, int] = {}
    for tag, (exchange, routing_key) in taken_entries(client, 0.0, (), unacked_key, index_key).items():
        source = routing_key if routing_key in sources else exchange if exchange in sources else None
        if source is None:
            continue
        with client.pipeline() as pipe:
            try:
                pipe.watch(unacked_key)
                raw = pipe.hget(unacked_key, tag)
                if raw is None:
                    continue
                message = json.dumps(json.loads(raw)[0])
                target = pick(readdressed(message, "")[1])
                pipe.multi()
                pipe.zrem(index_key, tag)
                pipe.hdel(unacked_key, tag)
                pipe.rpush(target, readdressed(message, target)[0])
                pipe.execute()
                moved[source] = moved.get(source, 0) + 1
            except redis.WatchError:
                continue
    return moved


# -- the consumer step: a worker takes back what it had taken, at once ----------------------------------------------
class RestoreTaken:
    """A consumer bootstep (added when the shortcuts are on): when the consumer starts, at worker start and again
    after every reconnect, it puts back on their queues the unacked messages of the queues this worker consumes
    alone that it does not hold now (a dead predecessor's; its own prefetched ones, dropped by Celery when the
    connection was lost) and what their taking lists hold (taken by a worker that stopped before recording them,
    taking.py); and it looks again every CHECK_SECONDS for unacked messages left behind (a restore that failed while
    Redis was down or full)."""

    CHECK_SECONDS = 10.0
    PERIODIC_MIN_AGE = 2.0  # a message taken this recently is in flight somewhere, not forgotten

    def __init__(self, queues: Callable[[], list[str]]) -> None:
        self.queues = queues
        self.starts = 0
        self.entry: Any = None

    def start(self, consumer: Any) -> None:
        why = "worker start" if self.starts == 0 else "reconnect"
        self.starts += 1
        self.restore(consumer, why)
        self.entry = consumer.timer.call_repeatedly(self.CHECK_SECONDS, self.restore, (consumer, "left behind"))

    def stop(self, consumer: Any) -> None:
        if self.entry is not None:
            self.entry.cancel()
            self.entry = None

    def restore(self, consumer: Any, why: str) -> list[str]:
        from tasks.metrics import TAKEN_RESTORED

        queues = self.queues()
        channel = getattr(getattr(consumer, "task_consumer", None), "channel", None)
        if not queues or channel is None:
            return []
        older = 0.0 if why != "left behind" else self.PERIODIC_MIN_AGE
        try:
            restored = restore_taken(channel, queues, held_tags(consumer), older_than=older)
            # not on the periodic look: this worker's own take may be in flight (a failed restore here means Redis
            # is unreachable, and the consumer's reconnect restores again)
            unrecorded = restore_unrecorded(channel, queues) if why != "left behind" else 0
        except redis.RedisError as exc:  # down or full: the next look tries again
            log.warning("could not put back taken messages of %s (%s): trying again in %.0f s", ",".join(queues),
                        exc, self.CHECK_SECONDS)
            return []
        if restored:
            TAKEN_RESTORED.labels(",".join(sorted(queues)), why).inc(len(restored))
            log.warning("put back %d taken and unacknowledged message(s) of %s at once (%s)", len(restored),
                        ",".join(queues), why)
        if unrecorded:
            TAKEN_RESTORED.labels(",".join(sorted(queues)), why).inc(unrecorded)
            log.warning("put back %d message(s) of %s taken but never recorded (a worker stopped between the two; %s)",
                        unrecorded, ",".join(queues), why)
        return restored


def consumer_step(queues: Callable[[], list[str]]) -> type:
    """RestoreTaken as a Celery consumer bootstep class (celery.bootsteps.StartStopStep) for app.steps['consumer']."""
    from celery import bootsteps

    class RestoreTakenStep(bootsteps.StartStopStep):
        requires = ("celery.worker.consumer.tasks:Tasks",)
        name = "model_zoo.restore_taken"

        def __init__(self, consumer: Any, **kwargs: Any) -> None:
            super().__init__(consumer, **kwargs)
            self.job = RestoreTaken(queues)

        def start(self, consumer: Any) -> None:
            self.job.start(consumer)

        def stop(self, consumer: Any) -> None:
            self.job.stop(consumer)

        def shutdown(self, consumer: Any) -> None:
            self.job.stop(consumer)

    return RestoreTakenStep
