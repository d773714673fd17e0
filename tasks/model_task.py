"""run_model: one model on one detection, on a device queue; returns a record and never raises."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import celeryd_init, worker_process_init, worker_process_shutdown, worker_shutdown

from tasks.app import app
from tasks.metrics import INFERENCE_SECONDS, MODEL_RECORDS
from tasks.results import redis_client
from tasks.schemas import ModelRecord
from tasks.settings import get_settings

log = logging.getLogger(__name__)

_settings = get_settings()
_node = {"name": ""}
_runtime = None
_runtime_lock = threading.Lock()  # a threads pool (micro-batching) may ask for it from several threads at once


def is_device_worker() -> bool:
    return os.environ.get("WORKER_ROLE") == "device"


@celeryd_init.connect
def remember_node_name(sender: str, **_: Any) -> None:
    """The parent learns its node name before forking, so the child publishes under the same name."""
    _node["name"] = sender


def runtime():
    """This process's DeviceRuntime, created on first use: in the prefork child, or in a threads-pool worker."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            from workers.runtime import DeviceRuntime

            created = DeviceRuntime(_settings, redis_client(), _node["name"] or f"pid{os.getpid()}")
            created.publish()
            created.start_heartbeat()
            _runtime = created
    return _runtime


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


@worker_process_init.connect
def start_runtime(**_: Any) -> None:
    """Device children set up their cache at start (no model is loaded until a task asks)."""
    if is_device_worker():
        runtime()


@worker_process_shutdown.connect
@worker_shutdown.connect
def stop_runtime(**_: Any) -> None:
    if _runtime is not None:
        _runtime.stop()


@app.task(
    name="run_model",
    bind=True,
    soft_time_limit=_settings.model_soft_time_limit,
    time_limit=_settings.model_time_limit,
)
def run_model(self, event_id: str, model: str, context: dict[str, Any]) -> dict[str, Any]:
    """Run `model` for `event_id` on this worker's device and return its ModelRecord as JSON."""
    deliveries = count_delivery(self.request.id)
    try:
        if deliveries > _settings.max_deliveries:
            record = ModelRecord(
                model=model, status="error", worker=_node["name"],
                error=f"gave up after {deliveries - 1} deliveries: the worker died running it each time",
            )
        else:
            record = runtime().run(model, context)
    except SoftTimeLimitExceeded:
        record = ModelRecord(
            model=model, status="timeout", worker=_node["name"], device=_runtime.device if _runtime else None,
            error=f"exceeded the {_settings.model_soft_time_limit:g}s soft time limit",
        )
    except Exception as exc:  # never raise into the chord: the callback would not fire
        log.exception("run_model %s for %s failed", model, event_id)
        record = ModelRecord(model=model, status="error", worker=_node["name"], error=f"{type(exc).__name__}: {exc}")
    MODEL_RECORDS.labels(model, record.status).inc()
    if record.status == "ok":
        INFERENCE_SECONDS.labels(model).observe(record.infer_ms / 1000)
    return record.model_dump(mode="json")
