"""kombu's Redis transport with the pool's trust boundary in its channel: messages are signed when sent and
screened when taken off a queue, before kombu or Celery decodes anything in them.

- Sending: every message a pool process publishes carries its HMAC (signing.py) when POOL_SIGNING_KEY is set.
- Taking: a message leaves its queue in one script that also puts it on the queue's taking list, and kombu's
  unacked record removes it from there in the same MULTI (taking.py): a worker killed between the two loses nothing.
  The channel waits for work on the queues' doorbells, which every publish through this channel rings.
- Receiving: a message taken from one of the pool's task queues (tasks/trust.py) goes through
  message_bounds.screen with its raw bytes and the queue it really came from (the Redis list, not what the sender
  wrote in it). A refused message is never delivered: it is off the queue already, is removed from its taking list
  and never enters kombu's unacknowledged set, so refusing it acknowledges it. Its sender is answered when it can be
  (public queues: a 'rejected' result naming the problem, and Celery's task result so AsyncResult.get() returns it),
  and every refusal is logged and counted (model_zoo_messages_refused_total{queue, reason}).

celeryconfig names this transport (`broker_transport`) where the shortcuts are on (celery_internals.enabled());
`_brpop_start`/`_brpop_read` replace kombu 5.7.0's BRPOP with the wait and the take (kombu's own, screened, where a
global_keyprefix is set), `_get` is kombu's with the screening added between the read and the parse, and
TakingQoS.append is kombu's record with the taking list's LREM in its MULTI.
"""

from __future__ import annotations

import logging
from functools import cached_property
from queue import Empty
from time import monotonic, time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str

from tasks import trust
from tasks.celery_internals import signing, taking
from tasks.celery_internals.deliveries import NotRecorded
from tasks.celery_internals.message_bounds import Policy, Refusal, screen
from tasks.redis_retry import refusal as redis_refusal
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


class TakingQoS(kombu_redis.QoS):
    """kombu's QoS, recording a message taken by TAKE_SCRIPT in `unacked` and removing it from its taking list in
    one MULTI."""

    def append(self, message: Any, delivery_tag: str) -> None:
        taken = self.channel.taken_now
        if taken is None:
            super().append(message, delivery_tag)
            return
        queue_key, raw = taken
        delivery = message.delivery_info
        record = kombu_redis.dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        try:
            with self.pipe_or_acquire() as pipe:
                pipe.zadd(self.unacked_index_key, {delivery_tag: time()}) \
                    .hset(self.unacked_key, delivery_tag, record) \
                    .lrem(taking.taking_key(queue_key), 1, raw) \
                    .execute()
        except Exception as exc:
            if redis_refusal(exc) is None:
                raise
            raise NotRecorded(str(exc), taken=taken) from exc
        self.channel.taken_now = None  # recorded: out of its taking list
        virtual.QoS.append(self, message, delivery_tag)


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, signing what it sends, taking messages in one step Redis does whole, and screening
    what it takes off the pool's task queues."""

    QoS = TakingQoS
    take_wait_seconds = taking.TAKE_WAIT_SECONDS
    taken_now: tuple[str, bytes] | None = None  # (queue key, message as taken) while kombu records it
    _take_idle = False  # the last take saw nothing more waiting: wait on the doorbells before the next
    _take_waited = False  # the poll in flight sent the wait before the take

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

    def _put(self, queue: str, message: dict, **kwargs: Any) -> None:
        """kombu's publish, ringing the queue's doorbell in the same round trip."""
        if kwargs.get("_publish_batch") is not None or (self._expires and queue in self._expires) \
                or self.global_keyprefix:
            super()._put(queue, message, **kwargs)
            if not self.global_keyprefix:
                with self.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
                    taking.ring(pipe, queue)
                    pipe.execute()
            return
        key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        with self.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            pipe.lpush(key, kombu_redis.dumps(message))
            taking.ring(pipe, queue)
            pipe.execute()

    def _brpop_start(self, timeout: float | None = None) -> None:
        """Send the take (after the wait on the doorbells when the last take found nothing) on the poll connection."""
        if self.global_keyprefix:
            super()._brpop_start(timeout)
            return
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        keys = taking.queue_keys(self, queues)
        connection = self.client.connection
        commands: list[tuple[Any, ...]] = []
        self._take_waited = self._take_idle
        if self._take_waited:
            commands.append(("BRPOP", *(taking.wake_key(queue) for queue in queues), self.take_wait_seconds))
        commands.append(("EVAL", taking.TAKE_SCRIPT, *taking.take_args(keys, queues)))
        self._in_poll = connection
        self._brpop_sent_at = monotonic()
        connection.send_packed_command(connection.pack_commands(commands))

    def _brpop_read(self, **options: Any) -> bool:
        if self.global_keyprefix:
            return self._screened_brpop_read(**options)
        try:
            connection = self.client.connection
            try:
                replies = []
                for command in (["BRPOP"] if self._take_waited else []) + ["EVAL"]:
                    try:
                        replies.append(self.client.parse_response(connection, command, **options))
                    except self.ResponseError as exc:  # read every reply first: the connection stays in step
                        replies.append(exc)
            except self.connection_errors:
                connection.disconnect()
                raise
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            taken = replies[-1]
            if not taken:
                self._take_idle = True
                raise Empty()
            self._take_idle = not taken[2]  # nothing more waiting: the next take waits on the doorbells first
            queue_key, item = bytes_to_str(taken[0]), taken[1]
            dest = queue_key.rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            try:
                message = self.screened(item, dest)
            except Exception:
                self.drop_taken(queue_key, item)
                raise
            if message is None:
                self.drop_taken(queue_key, item)
                return True
            self.taken_now = (queue_key, item)
            try:
                self.connection._deliver(message, dest)
            except Exception as exc:
                if self.taken_now is not None and not isinstance(exc, NotRecorded) and redis_refusal(exc) is None:
                    # not recorded and not deliverable (kombu's BRPOP dropped such a message too): not taken again
                    log.error("dropped a message of queue %s that could not be delivered: %r", dest, exc)
                    self.drop_taken(queue_key, item)
                raise
            finally:
                self.taken_now = None
            return True
        finally:
            self._in_poll = None
            self._take_waited = False
            self._flush_brpop_reauth()

    def drop_taken(self, queue_key: str, item: bytes) -> None:
        """Remove a refused message from its taking list (refusing it acknowledges it)."""
        with self.conn_or_acquire() as client:
            client.lrem(taking.taking_key(queue_key), 1, item)

    def _screened_brpop_read(self, **options: Any) -> bool:
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
