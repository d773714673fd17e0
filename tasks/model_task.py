"""run_model: one model on one detection, on a device queue; returns a record and never raises.

The device runtime (model cache, decoded frames, batchers) lives in the process that runs the tasks: created
when a prefork child starts (never in the parent that forks, so CUDA is never touched there), or on first use
in a threads-pool worker. Time limits come from celeryconfig's task_annotations (MODEL_SOFT_TIME_LIMIT,
MODEL_TIME_LIMIT).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import celeryd_init, worker_process_init, worker_process_shutdown, worker_shutdown
from pydantic import ValidationError

from tasks.celery import app
from tasks.connection import redis_client
from workers.frames import DecodedFrames, FrameStore
from workers.records import ModelRecord, ModelRequest
from workers.runtime import DeviceRuntime
from workers.settings import get_settings

log = logging.getLogger(__name__)

_node = {"name": ""}
_runtime: DeviceRuntime | None = None
_runtime_lock = threading.Lock()  # a threads pool may ask for it from several threads at once


@celeryd_init.connect
def remember_node_name(sender: str, **_: Any) -> None:
    """The parent learns its node name before forking, so the child publishes under the same name."""
    _node["name"] = sender


def runtime() -> DeviceRuntime:
    """This process's DeviceRuntime, created on first use and announced in Redis."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            settings = get_settings()
            frames = DecodedFrames(FrameStore(redis_client(), settings.frame_ttl_seconds), settings.max_image_pixels)
            created = DeviceRuntime(settings, frames, _node["name"] or f"pid{os.getpid()}", client=redis_client())
            created.publish()
            created.start_heartbeat()
            _runtime = created
    return _runtime


@worker_process_init.connect
def start_runtime(**_: Any) -> None:
    """Device children set up their cache at start (no model is loaded until a task asks)."""
    if get_settings().is_device_worker:
        runtime()


@worker_process_shutdown.connect
@worker_shutdown.connect
def stop_runtime(**_: Any) -> None:
    if _runtime is not None:
        _runtime.stop()


def count_delivery(task_id: str | None) -> int:
    """How many times this task message has started (acks_late redelivers it when a worker dies)."""
    if not task_id:
        return 1
    key = f"deliveries:{task_id}"
    try:
        with redis_client().pipeline() as pipe:
            count, _ = pipe.incr(key).expire(key, 24 * 3600).execute()
        return int(count)
    except redis.RedisError:
        return 1


def run_request(request: ModelRequest, deliveries: int) -> ModelRecord:
    """The record for one delivery of a model task: given up, timed out, failed, or the model's answer."""
    settings = get_settings()
    worker = _node["name"]
    try:
        if deliveries > settings.max_deliveries:
            return ModelRecord(model=request.model, status="error", worker=worker, error=(
                f"gave up after {deliveries - 1} deliveries: the worker died running it each time"))
        return runtime().run(request)
    except SoftTimeLimitExceeded:
        return ModelRecord(model=request.model, status="timeout", worker=worker,
                           device=_runtime.device if _runtime else None,
                           error=f"exceeded the {settings.model_soft_time_limit:g}s soft time limit")
    except Exception as exc:  # never raise into the chord: the callback would not fire
        log.exception("run_model %s for %s failed", request.model, request.event_id)
        return ModelRecord(model=request.model, status="error", worker=worker, error=f"{type(exc).__name__}: {exc}")


@app.task(name="run_model", bind=True)
def run_model(self, request: dict[str, Any]) -> dict[str, Any]:
    """Run one ModelRequest on this worker's device and return its ModelRecord as JSON."""
    try:
        parsed = ModelRequest.model_validate(request)
    except ValidationError as exc:  # only the router writes requests; still, never raise into the chord
        model = request.get("model") if isinstance(request, dict) else None
        return ModelRecord(model=str(model or "unknown"), status="error", worker=_node["name"],
                           error=f"malformed model request: {exc.errors()[0]['msg']}").model_dump(mode="json")
    return run_request(parsed, count_delivery(self.request.id)).model_dump(mode="json")
