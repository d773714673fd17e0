"""A message taken from a queue is never dropped when Redis refuses kombu's unacked bookkeeping for it.

kombu's Redis transport takes a message with BRPOP (it leaves the queue) and then records it in the `unacked` hash
(ZADD + HSET) before Celery sees it. When that second write fails (Redis answered OOM at maxmemory, or went away
between the two), kombu raises out of its delivery, the consumer restarts or dies, and the message exists nowhere
(issue 28: accepted events lost with Redis full). Here a failed record parks the message instead: it is not handed
to Celery, consuming pauses (QoS.can_consume is False while anything is parked), and a thread puts it back on its
queue where BRPOP takes next, with backoff, as soon as Redis takes the write. A worker killed while it holds a
parked message loses nothing when it was taken by the pool's channel (trusted_transport: it is still in its queue's
taking list, which the next worker start puts back); with kombu's own BRPOP it is lost.

Acknowledging is also kept from failing on a full Redis: kombu removes the acknowledged message from its unacked keys
in a MULTI, and Redis refuses every command queued in a MULTI while it is over maxmemory (deletions included), so the
ack raised out of the event loop and ended the worker ("Unrecoverable error: OutOfMemoryError"), with whatever it had
parked. The same two deletions are then sent outside a transaction, which Redis takes when full.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from tasks.celery_internals import taking
from tasks.metrics import DELIVERIES_PARKED
from tasks.redis_retry import MAX_DELAY_SECONDS, refusal

log = logging.getLogger(__name__)

_original_append = kombu_redis.QoS.append
_original_can_consume = kombu_redis.QoS.can_consume
_original_deliver = kombu_redis.Transport._deliver
_original_ack = kombu_redis.QoS.ack
_original_reject = kombu_redis.QoS.reject


class NotRecorded(Exception):
    """Redis refused the unacked record of a message just taken (the cause says why); `taken` is (queue key, message
    as taken) when the message sits in its taking list (taking.py)."""

    def __init__(self, problem: str, taken: tuple[str, bytes] | None = None) -> None:
        super().__init__(problem)
        self.taken = taken


class Parking:
    """Messages taken but not recorded, and the thread that puts them back on their queues."""

    def __init__(self) -> None:
        self._parked: list[tuple[str, dict[str, Any], tuple[str, bytes] | None]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.client_factory = lambda: redis.Redis.from_url(broker_url())

    def holding(self) -> int:
        return len(self._parked)

    def park(self, queue: str, payload: dict[str, Any], reason: BaseException,
             taken: tuple[str, bytes] | None = None) -> None:
        payload = copy.deepcopy(payload)
        for part in (payload.get("headers"), (payload.get("properties") or {}).get("delivery_info")):
            if isinstance(part, dict):
                part["redelivered"] = True
        with self._lock:
            self._parked.append((queue, payload, taken))
            start = self._thread is None or not self._thread.is_alive()
            if start:
                self._thread = threading.Thread(target=self._put_back, name="parked-deliveries", daemon=True)
        DELIVERIES_PARKED.labels(queue).inc()
        log.warning("Redis refused the unacked record of a message taken from %s (%s): kept here, consuming paused, "
                    "putting it back on its queue", queue, str(reason)[:200])
        if start:
            self._thread.start()

    def _put_back(self) -> None:
        delay = 0.1
        client = self.client_factory()
        while True:
            with self._lock:
                if not self._parked:
                    self._thread = None
                    return
                queue, payload, taken = self._parked[0]
            try:
                if taken is None:
                    client.rpush(queue, json.dumps(payload))  # the right end: BRPOP takes it next
                else:  # out of its taking list and back at the head of its queue, in one script
                    taking.put_back(client, taken[0], taken[1], json.dumps(payload))
            except redis.RedisError as exc:
                log.warning("cannot put a parked message back on %s yet (%s); again in %.1f s", queue, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, MAX_DELAY_SECONDS)
                continue
            delay = 0.1
            with self._lock:
                self._parked.pop(0)
            log.info("a parked message is back on %s", queue)

    def drain(self, timeout: float) -> int:
        """Wait up to `timeout` for the parked messages to be put back (at worker shutdown); how many are left."""
        deadline = time.monotonic() + timeout
        while self.holding() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = self.holding()
        if left:
            log.critical("%d taken message(s) could not be put back on their queue before shutdown: they are lost", left)
        return left


PARKING = Parking()


def broker_url() -> str:
    from workers.settings import get_settings

    return get_settings().broker_url


def _append(self: Any, message: Any, delivery_tag: str) -> None:
    try:
        _original_append(self, message, delivery_tag)
    except Exception as exc:
        if refusal(exc) is None:
            raise
        raise NotRecorded(str(exc)) from exc


def _deliver(self: Any, message: Any, queue: str) -> None:
    try:
        _original_deliver(self, message, queue)
    except NotRecorded as exc:
        PARKING.park(queue, message, exc, exc.taken)


def _ack(self: Any, delivery_tag: str) -> None:
    try:
        _original_ack(self, delivery_tag)
    except Exception as exc:
        if refusal(exc) != "full":
            raise
        with self.channel.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            pipe.zrem(self.unacked_index_key, delivery_tag).hdel(self.unacked_key, delivery_tag).execute()
        virtual.QoS.ack(self, delivery_tag)


def _reject(self: Any, delivery_tag: str, requeue: bool = False) -> None:
    """A requeue Redis refuses (full) leaves the message in the unacked hash, where the worker's next look for taken
    messages it does not hold puts it back (tasks/celery_internals/unacked.RestoreTaken)."""
    try:
        _original_reject(self, delivery_tag, requeue=requeue)
    except Exception as exc:
        if refusal(exc) != "full":
            raise
        if not requeue:
            _ack(self, delivery_tag)
            return
        log.warning("Redis is full: message %s stays taken until it can be put back", delivery_tag)
        virtual.QoS.ack(self, delivery_tag)


def _can_consume(self: Any) -> bool:
    return not PARKING.holding() and _original_can_consume(self)


def install() -> None:
    """Park messages whose unacked record fails instead of dropping them; acknowledge on a full Redis (idempotent)."""
    kombu_redis.QoS.append = _append
    kombu_redis.QoS.ack = _ack
    kombu_redis.QoS.reject = _reject
    kombu_redis.QoS.can_consume = _can_consume
    kombu_redis.Transport._deliver = _deliver


def installed() -> bool:
    return kombu_redis.Transport._deliver is _deliver
