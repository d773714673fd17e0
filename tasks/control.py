"""Remote-control commands of the pool's workers: what a device worker holds, and loading or unloading models.

`celery -A tasks inspect loaded_models` reads what the model process published; `celery -A tasks control
preload_models clothing pose` and `... unload_model florence` hand the work to the process holding the cache
and answer at once with the request's id (the outcome is pushed to workers:command-replies:<id>, where
`model-zoo preload` / `model-zoo unload` wait for it; `inspect loaded_models` shows the result too).
"""

from __future__ import annotations

import json
from typing import Any

from celery.worker.control import control_command, inspect_command

from tasks.connection import redis_client
from workers import model_commands
from workers.model_commands import ModelCommand
from workers.registry import REGISTRY
from workers.settings import get_settings
from workers.state import WORKER_STATE_PREFIX


@inspect_command()
def loaded_models(state) -> dict:
    """This worker's resident models and memory, as its prefork child last published them to Redis.

    Under prefork the command runs in the parent, which holds no models; the child publishes after
    every load, eviction and heartbeat. Each model shows its estimated and measured bytes side by side.
    """
    hostname = state.consumer.hostname
    raw = redis_client().get(WORKER_STATE_PREFIX + hostname)
    if raw is None:
        return {"worker": hostname, "models": [], "note": "no device state published (not a device worker, or idle)"}
    return json.loads(raw)


@control_command(variadic="models", signature="[model1 [model2 [... [modelN]]]]")
def preload_models(state, models: Any = None) -> dict:
    """Load these models into this device worker's cache now (in the order given)."""
    return send_model_command(state, "preload", models)


@control_command(variadic="models", signature="[model1 [model2 [... [modelN]]]]")
def unload_model(state, models: Any = None) -> dict:
    """Unload these models from this device worker's cache now (resident ones too; a model in use is kept)."""
    return send_model_command(state, "unload", models)


def send_model_command(state, action: str, models: Any) -> dict:
    """Hand a preload/unload to the process holding the cache: this one (a threads pool), else through Redis.

    Answers at once: {"worker", "action", "request", "models", "via"} or an "error"; the outcome follows at
    workers:command-replies:<request>.
    """
    worker = state.consumer.hostname
    names = [models] if isinstance(models, str) else list(models or [])
    if not get_settings().is_device_worker:
        return {"worker": worker, "action": action, "skipped": "not a device worker"}
    if not names:
        return {"worker": worker, "action": action, "error": "name at least one model"}
    unknown = [name for name in names if name not in REGISTRY]
    if unknown:
        known = ", ".join(REGISTRY)
        return {"worker": worker, "action": action, "error": f"unknown model(s) {unknown}; known: {known}"}
    command = ModelCommand(action=action, models=tuple(names), worker=worker)
    reply = {"worker": worker, "action": action, "request": command.id, "models": names}
    client = redis_client()
    # A threads-pool device worker created its runtime (and registered it here) before it started consuming.
    execute = model_commands.local_executor()
    if execute is not None:
        model_commands.run_in_background(client, command, execute)
        return reply | {"via": "in process"}
    if model_commands.publish_command(client, command) == 0:
        return {"worker": worker, "action": action,
                "error": "no model process is listening (the device child has not started its model services)"}
    return reply | {"via": "redis"}
