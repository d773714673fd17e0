"""The size bound on enrich_detection messages, enforced in the worker's consumer before the body is decoded.

An oversized message is answered there, cheaply: a small 'rejected' result is stored and announced, Celery's task
result is set (so the sender's AsyncResult.get() returns it), and the message is acknowledged. Its body is never
parsed into Python objects, never handed to a pool process, and never kept in celery-task-meta.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.strategy import default

from workers.settings import get_settings

log = logging.getLogger(__name__)


def oversized_reason(size: int, limit: int) -> str:
    return f"the message is {size} bytes, above the {limit} byte limit (MAX_EVENT_BYTES); send frames by image_key"


def bounded_strategy(task: Any, app: Any, consumer: Any, **options: Any):
    """Celery's default strategy for `task`, behind a check of the message body's size (Task.Strategy)."""
    handle = default(task, app, consumer, **options)
    limit = get_settings().max_event_bytes

    def on_message(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kwargs: Any) -> Any:
        size = len(message.body or b"")
        if size <= limit:
            return handle(message, body, ack, reject, callbacks, **kwargs)
        answer_oversized(app, message.headers or {}, size, limit)
        ack(log, consumer.connection_errors)
        return None

    return on_message


def answer_oversized(app: Any, headers: dict, size: int, limit: int) -> None:
    """Store the rejection and Celery's task result for a message too large to decode; never raises."""
    from tasks.router import reject  # the router module registers the task this strategy serves

    task_id = headers.get("id")
    log.warning("refused an enrich_detection message of %d bytes (limit %d), task %r", size, limit, task_id)
    try:
        payload = reject(None, {"event": oversized_reason(size, limit)}, task_id)
        if isinstance(task_id, str) and task_id:
            app.backend.mark_as_done(task_id, payload, request=None)
    except Exception:  # the consumer must keep consuming; the sender's get() then times out
        log.exception("could not store the rejection of an oversized message %r", task_id)
