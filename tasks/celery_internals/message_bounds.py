"""The size and shape bounds on enrich_detection messages, enforced in the worker's consumer before the body is
decoded: at most MAX_EVENT_BYTES, and a JSON shape an event can have (a few objects and arrays, shallow, few items).

Bytes alone do not bound the cost of decoding: 4 MB of `{"frames": [{}, {}, ...]}` is a million objects, 3 GB and
20 s in the decoder and the schema; a deep nest of arrays overflows the decoder's recursion. The shape is read from
the raw bytes with C-speed scans (brackets, commas and colons inside strings count too: an event's strings are ids,
timestamps and base64, which hold none).

A refused message is answered there, cheaply: a small 'rejected' result is stored and announced, Celery's task
result is set (so the sender's AsyncResult.get() returns it), and the message is acknowledged. Its body is never
parsed into Python objects, never handed to a pool process, and never kept in celery-task-meta.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.strategy import default

from workers.settings import get_settings

log = logging.getLogger(__name__)


MAX_CONTAINERS = 5_000  # JSON objects and arrays in one message (an event with 1,000 frames has about 1,010)
MAX_DEPTH = 32  # nesting of objects and arrays (an event needs 4)
MAX_ITEMS = 20_000  # commas and colons: values in arrays, members of objects
BRACKETS = b"[]{}"
NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in BRACKETS)


def oversized_reason(size: int, limit: int) -> str:
    return f"the message is {size} bytes, above the {limit} byte limit (MAX_EVENT_BYTES); send frames by image_key"


def shape_problem(body: bytes) -> str | None:
    """Why the body's JSON shape is not an event's (too many objects, too deep, too many items), or None."""
    brackets = body.translate(None, NOT_BRACKETS)
    containers = brackets.count(b"[") + brackets.count(b"{")
    if containers > MAX_CONTAINERS:
        return f"the message holds {containers} JSON objects and arrays, above the {MAX_CONTAINERS} limit"
    depth = deepest = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_DEPTH:
        return f"the message nests JSON {deepest} deep, above the {MAX_DEPTH} limit"
    items = body.count(b",") + body.count(b":")
    if items > MAX_ITEMS:
        return f"the message holds {items} JSON items, above the {MAX_ITEMS} limit"
    return None


def bounded_strategy(task: Any, app: Any, consumer: Any, **options: Any):
    """Celery's default strategy for `task`, behind a check of the message body's size (Task.Strategy)."""
    handle = default(task, app, consumer, **options)
    limit = get_settings().max_event_bytes

    def on_message(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kwargs: Any) -> Any:
        raw = message.body or b""
        raw = raw.encode() if isinstance(raw, str) else raw
        problem = oversized_reason(len(raw), limit) if len(raw) > limit else shape_problem(raw)
        if problem is None:
            return handle(message, body, ack, reject, callbacks, **kwargs)
        answer_refused(app, message.headers or {}, len(raw), problem)
        ack(log, consumer.connection_errors)
        return None

    return on_message


def answer_refused(app: Any, headers: dict, size: int, problem: str) -> None:
    """Store the rejection and Celery's task result for a message not worth decoding; never raises."""
    from tasks.router import reject  # the router module registers the task this strategy serves

    task_id = headers.get("id")
    log.warning("refused an enrich_detection message of %d bytes, task %r: %s", size, task_id, problem)
    try:
        payload = reject(None, {"event": problem}, task_id)
        if isinstance(task_id, str) and task_id:
            app.backend.mark_as_done(task_id, payload, request=None)
    except Exception:  # the consumer must keep consuming; the sender's get() then times out
        log.exception("could not store the rejection of a refused message %r", task_id)
