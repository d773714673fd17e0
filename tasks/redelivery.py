"""Which taken messages a worker puts back at once: its own queues' unacknowledged messages that it does not hold.

kombu's Redis transport keeps every message a worker has taken in its `unacked` hash until it is acknowledged, and on
its own returns them to their queue only after VISIBILITY_TIMEOUT_SECONDS (an hour by default). A device queue
(gpu.N, cpu.N) has exactly one consumer, its device worker, and the router's queues one router worker per pool: what
is unacknowledged for them and not held by that worker was taken by a dead predecessor (killed, out of memory, the
watchdog), or by the worker itself before its connection to Redis dropped (Celery forgets its prefetched messages on
a reconnect). So the worker puts those back when it starts, after every reconnect, and every
RestoreTaken.CHECK_SECONDS for any a failed restore left behind (tasks/celery_internals/unacked.py). A dead device
worker's queue and its taken messages are moved to live workers by tasks/rescue.py.

With Celery's shortcuts off (CELERY_SPEEDUPS=0, or another Celery/kombu version) kombu alone returns them, after
VISIBILITY_TIMEOUT_SECONDS.
"""

from __future__ import annotations

from workers.launch import ROUTER_QUEUES
from workers.settings import get_settings


def owned_queues() -> list[str]:
    """The queues this worker consumes alone: its device queue, or the router's queues; none for other processes."""
    settings = get_settings()
    if settings.is_device_worker:
        return [settings.device_queue]
    if settings.worker_role == "router":
        return ROUTER_QUEUES.split(",")
    return []
