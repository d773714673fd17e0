"""Send one event's chord with Celery's own chord protocol, without the canvas's per-call copies.

`chord(header, body).apply_async()` clones and deep-copies every signature, freezes a group, builds a
GroupResult and a barrier, and subscribes the sender to every header task's result (for a barrier nobody
reads here): in scripts/bench.py's profile that was a quarter of the router's CPU per event. For a flat header
of single tasks, what reaches Redis is small and documented by Celery itself: the chord's size under the group
(`backend.set_chord_size`), then each header task's message carrying `group_id`, `group_index` and the frozen
body as `chord`. The result backend's `on_chord_part_return` then counts the parts and sends the body with
their results, exactly as for a canvas chord. tests/unit/test_chord_send.py checks the messages against the
canvas's own; every integration test's event goes through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery, Signature


def send_chord(app: Celery, header: Sequence[Signature], body: Signature, *, group_id: str, body_id: str,
               root_id: str, parent_id: str) -> None:
    """Publish `header` (single tasks with their own task ids and queues) as a chord whose `body` runs once,
    with the header's results, under the task id `body_id` (the last task's, when the body is a chain)."""
    if not header:
        raise ValueError("a chord needs at least one header task")
    body.freeze(body_id, root_id=root_id)
    app.backend.set_chord_size(group_id, len(header))
    with app.producer_or_acquire() as producer:
        for index, signature in enumerate(header):
            options: dict[str, Any] = dict(signature.options)
            app.tasks[signature.task].apply_async(
                signature.args, signature.kwargs, producer=producer, add_to_parent=False, chord=body,
                group_id=group_id, group_index=index, root_id=root_id, parent_id=parent_id, **options,
            )
