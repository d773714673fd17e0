"""rescue_dead_queues: a dead device worker's waiting and taken model tasks move to live workers' queues.

Device queues are per worker (gpu.N names one GPU in the whole pool), so when a host dies nothing consumes its queue.
Placement stops sending it work once its state expires (three heartbeats); this task, sent by beat every
RESCUE_INTERVAL_SECONDS, moves what is left: the messages waiting in the queue, and the messages its worker had
taken and not acknowledged (kombu's unacked hash), each re-addressed to the live worker placement picks for its
model. So the dead host's events end complete, not partial at their deadline. Should the host come back (it was only
cut off), a task it also runs is counted once by the chord's join, and the result is stored once.
A lock keeps two beats from rescuing at once.
"""

from __future__ import annotations

import logging
from typing import Any

from tasks.celery import app
from tasks.celery_internals import enabled
from tasks.connection import redis_client
from tasks.metrics import TAKEN_RESTORED
from tasks.placement import choose_queue
from workers.settings import get_settings
from workers.state import device_queues, live_workers, queue_backlog

log = logging.getLogger(__name__)

RESCUE_LOCK = "rescue:lock"


def model_of(body: Any) -> str | None:
    """The model a run_model message asks for ([args, kwargs, embed], args[0] the request), or None."""
    try:
        request = body[0][0]
        return request["model"] if isinstance(request.get("model"), str) else None
    except (TypeError, IndexError, KeyError, AttributeError):
        return None


@app.task(name="rescue_dead_queues")
def rescue_dead_queues() -> dict[str, dict[str, int]]:
    """Move the work of every device queue with no live worker to live workers; what moved, per dead queue."""
    from tasks.celery_internals.taking import taking_key
    from tasks.celery_internals.unacked import move_queued, move_taken

    settings = get_settings()
    client = redis_client()
    if not enabled():
        return {}  # Celery's stock path: a dead worker's events end partial at their deadline (the sweeper)
    if not client.set(RESCUE_LOCK, "1", nx=True, ex=max(1, int(settings.rescue_interval_seconds * 0.9))):
        return {}
    live = live_workers(client, settings.worker_state_max_age_seconds)
    if not live:
        return {}  # nowhere to move anything: it waits for a worker
    dead = (set(settings.device_queues) | device_queues(client)) - {w.queue for w in live}
    if not dead:
        return {}
    backlog = queue_backlog(client, [w.queue for w in live])
    sent: dict[str, int] = {}

    def pick(body: Any) -> str:
        model = model_of(body)
        queue = choose_queue(model or "", live, [], reserved=sent, backlog=backlog, affinity=model is not None)
        sent[queue] = sent.get(queue, 0) + 1
        return queue

    moved: dict[str, dict[str, int]] = {}
    taken = move_taken(client, dead, pick)
    for queue in sorted(dead):
        waiting = move_queued(client, queue, pick) + move_queued(client, taking_key(queue), pick)
        if waiting or taken.get(queue):
            moved[queue] = {"waiting": waiting, "taken": taken.get(queue, 0)}
            TAKEN_RESTORED.labels(queue, "dead worker").inc(waiting + taken.get(queue, 0))
            log.warning("device queue %s has no live worker: moved %d waiting and %d taken model task(s) to %s",
                        queue, waiting, taken.get(queue, 0), ", ".join(sorted(sent)))
    return moved
