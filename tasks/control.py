"""Remote-control commands: `celery -A tasks inspect loaded_models` reads what device children published."""

from __future__ import annotations

import json

from celery.worker.control import inspect_command

from tasks.connection import redis_client
from workers.state import WORKER_STATE_PREFIX


@inspect_command()
def loaded_models(state) -> dict:
    """This worker's resident models and memory, as its prefork child last published them to Redis.

    Under prefork the command runs in the parent, which holds no models; the child publishes after
    every load, eviction and heartbeat.
    """
    hostname = state.consumer.hostname
    raw = redis_client().get(WORKER_STATE_PREFIX + hostname)
    if raw is None:
        return {"worker": hostname, "models": [], "note": "no device state published (not a device worker, or idle)"}
    return json.loads(raw)
