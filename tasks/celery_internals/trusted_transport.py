"""kombu's Redis transport with the pool's trust boundary in its channel: messages are signed when sent and
screened when taken off a queue, before kombu or Celery decodes anything in them.

- Sending: every message a pool process publishes carries its HMAC (signing.py) when POOL_SIGNING_KEY is set.
- Receiving: a message popped from one of the pool's task queues (tasks/trust.py) goes through
  message_bounds.screen with its raw bytes and the queue it really came from (the Redis list, not what the sender
  wrote in it). A refused message is never delivered: it is off the list already (BRPOP) and never enters
  kombu's unacknowledged set, so refusing it acknowledges it. Its sender is answered when it can be (public
  queues: a 'rejected' result naming the problem, and Celery's task result so AsyncResult.get() returns it), and
  every refusal is logged and counted (model_zoo_messages_refused_total{queue, reason}).

celeryconfig names this transport (`broker_transport`) where the shortcuts are on (celery_internals.enabled());
`_brpop_read` and `_get` are kombu 5.7.0's with the screening added between the read and the parse.
"""

from __future__ import annotations

import logging
from functools import cached_property
from queue import Empty
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str

from tasks import trust
from tasks.celery_internals import signing
from tasks.celery_internals.message_bounds import Policy, Refusal, screen
from workers.settings import get_settings

log = logging.getLogger(__name__)


def policy() -> Policy:
    settings = get_settings()
    key = settings.pool_signing_key.get_secret_value().encode() if settings.pool_signing_key else None
    return Policy(max_body_bytes=settings.max_event_bytes, key=key, public_queues=trust.PUBLIC_QUEUES,
                  public_tasks=trust.PUBLIC_TASKS)


def screened_queue(queue: str) -> bool:
    """Queues whose messages are screened: the pool's task queues (reply and event queues are not tasks)."""
    return trust.is_public(queue) or trust.is_internal(queue)


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, signing what it sends and screening what it takes off the pool's task queues."""

    @cached_property
    def trust_policy(self) -> Policy:
        found = policy()
        if found.key is None:
            log.error("POOL_SIGNING_KEY is not set: this process signs nothing, and every message on the pool's "
                      "internal queues (assemble, gpu.N, cpu.N) is refused")
        return found

    def _inplace_augment_message(self, message: dict, exchange: str, routing_key: str) -> None:
        key = self.trust_policy.key
        if key is not None:
            signing.sign(message, key)  # before kombu base64-encodes the body: the bytes the receiver checks
        super()._inplace_augment_message(message, exchange, routing_key)

    def screened(self, item: bytes, queue: str) -> dict | None:
        """The envelope to deliver, or None when the message is refused (answered where it can be, counted)."""
        if not screened_queue(queue):
            return kombu_redis.loads(bytes_to_str(item))
        outcome = screen(item, queue, self.trust_policy)
        if isinstance(outcome, Refusal):
            refused(outcome, len(item))
            return None
        return outcome

    def _brpop_read(self, **options: Any) -> bool:
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if dest__item:
                dest, item = dest__item
                dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
                self._queue_cycle.rotate(dest)
                message = self.screened(item, dest)
                if message is not None:
                    self.connection._deliver(message, dest)
                return True
            raise Empty()
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def _get(self, queue: str) -> dict:
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                item = client.rpop(self._q_for_pri(queue, pri))
                if item:
                    self._maybe_update_queues_expire(client, queue)
                    message = self.screened(item, queue)
                    if message is None:
                        raise Empty()
                    return message
            self._maybe_update_queues_expire(client, queue)
            raise Empty()


class Transport(kombu_redis.Transport):
    Channel = Channel


def refused(refusal: Refusal, size: int) -> None:
    """Log, count and (where the sender can be told) answer one refused message; never raises."""
    from tasks.metrics import MESSAGES_REFUSED

    MESSAGES_REFUSED.labels(refusal.queue, refusal.reason).inc()
    log.warning("refused a message of %d bytes on queue %s (task %r, id %r): %s", size, refusal.queue,
                refusal.task, refusal.task_id, refusal.problem)
    if refusal.reason == "unsigned":
        log.warning("if this message came from the pool, every pool process needs the same POOL_SIGNING_KEY and "
                    "the same Celery path (CELERY_SPEEDUPS)")
    if refusal.answer and refusal.task_id:
        answer_refused(refusal.task_id, {refusal.field: refusal.problem})


def answer_refused(task_id: str, errors: dict[str, str]) -> None:
    """Store the sender's rejection and Celery's task result for a message that was not decoded; never raises."""
    from tasks.celery import app
    from tasks.router import reject  # the router module holds the rejection every sender reads

    try:
        payload = reject(None, errors, task_id)
        app.backend.mark_as_done(task_id, payload, request=None)
    except Exception:  # the consumer must keep consuming; the sender's get() then times out
        log.exception("could not store the rejection of refused message %r", task_id)
