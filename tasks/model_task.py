"""run_model: one model on one detection, on a device queue; returns a record and never raises.

The device runtime (model cache, decoded frames, batchers) lives in the process that runs the tasks: the
threads-pool worker itself (the default), or the prefork child (never the parent that forks, so CUDA is never
touched there). Time limits: in a threads pool the runtime gives up waiting at MODEL_SOFT_TIME_LIMIT and its
watchdog ends the process past MODEL_TIME_LIMIT; under prefork, celeryconfig's task_annotations set Celery's own.

Crashes: a device worker that starts puts back on its queue whatever its dead predecessor had taken and not
acknowledged (tasks/redelivery.py), and counts a crash for each task its call journal shows inside a model call
when the process died. A redelivered task that has crashed its worker MAX_DELIVERIES times gives up with an
error record instead of killing the worker again.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import celeryd_init, worker_init, worker_process_init, worker_process_shutdown, worker_shutdown
from pydantic import ValidationError

from tasks.celery import app
from tasks.connection import redis_client
from tasks.scene_sharing import SceneSharing
from workers.frames import DecodedFrames, FrameStore
from workers.records import ModelRecord, ModelRequest
from workers.runtime import DeviceRuntime, GpuUnavailable, pick_device
from workers.settings import get_settings

log = logging.getLogger(__name__)

_node = {"name": ""}
_runtime: DeviceRuntime | None = None
_runtime_lock = threading.Lock()  # a threads pool may ask for it from several threads at once


@celeryd_init.connect
def remember_node_name(sender: str, **_: Any) -> None:
    """The parent learns its node name before forking, so the child publishes under the same name."""
    _node["name"] = sender


CRASH_KEY_TTL = 24 * 3600


def crash_key(task_id: str) -> str:
    return f"crashes:{task_id}"


def runtime() -> DeviceRuntime:
    """This process's DeviceRuntime, created on first use, its predecessor's crashes counted, announced in Redis."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            settings = get_settings()
            frames = DecodedFrames(FrameStore(redis_client(), settings.frame_ttl_seconds), settings.max_image_pixels)
            created = DeviceRuntime(settings, frames, _node["name"] or f"pid{os.getpid()}", client=redis_client())
            count_crashes(created.crashes.open_journal())
            _runtime = created.start()
            _runtime.services.start()  # preload/unload commands; warm-up and PRELOAD_MODELS in the background
    return _runtime


def scene_sharing() -> SceneSharing:
    """Single flight of scene models per frame (SCENE_SHARE_TTL_SECONDS, SCENE_SHARE_WAIT_SECONDS)."""
    settings = get_settings()
    wait = min(settings.scene_share_wait_seconds, settings.model_soft_time_limit / 2)  # time left to run it here
    return SceneSharing(redis_client(), settings.scene_share_ttl_seconds, wait, claim_seconds=settings.model_time_limit)


def count_crashes(task_ids: list[str]) -> None:
    """One more crash for each task that was inside a model call when the previous process died."""
    if not task_ids:
        return
    log.warning("the previous worker process died inside model calls of %d task(s): %s", len(task_ids),
                ", ".join(task_ids))
    with redis_client().pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            pipe.incr(crash_key(task_id)).expire(crash_key(task_id), CRASH_KEY_TTL)
        pipe.execute()


EXIT_NO_GPU = 3  # a gpu.N worker that cannot use its GPU stops with this code (CPU_FALLBACK=1: runs on the CPU)


@worker_init.connect
def prepare_device_worker(sender: Any = None, **_: Any) -> None:
    """Before consuming: a gpu.N worker stops unless it can use its GPU; a threads pool starts its runtime (what a
    dead predecessor left unacknowledged is put back by the consumer's RestoreTaken step: tasks/redelivery.py)."""
    settings = get_settings()
    if not settings.is_device_worker:
        return
    try:
        pick_device(settings)  # NVML-based: a prefork parent does not initialise CUDA before it forks
    except GpuUnavailable as exc:
        log.critical("%s", exc)
        raise SystemExit(EXIT_NO_GPU) from None
    if settings.device_pool == "threads":
        runtime()  # this process owns the device: nothing forks after this


@worker_process_init.connect
def start_runtime(**_: Any) -> None:
    """A prefork device child sets up its cache at start (no model is loaded until a task asks)."""
    if get_settings().is_device_worker:
        runtime()


@worker_process_shutdown.connect
@worker_shutdown.connect
def stop_runtime(**_: Any) -> None:
    if _runtime is not None:
        _runtime.stop()


def crashes_of(task_id: str | None, redelivered: bool) -> int:
    """How many times this task's model call has died with its worker (only a redelivered task can have any)."""
    if not task_id or not redelivered:
        return 0
    try:
        return int(redis_client().get(crash_key(task_id)) or 0)
    except redis.RedisError:
        return 0


def run_request(request: ModelRequest, task_id: str | None, crashes: int) -> ModelRecord:
    """The record for one delivery of a model task: given up, timed out, failed, or the model's answer."""
    settings = get_settings()
    worker = _node["name"]
    try:
        if crashes >= settings.max_deliveries:
            return ModelRecord(model=request.model, status="error", worker=worker, error=(
                f"gave up after {crashes} deliveries: the worker died running it each time"))
        here = runtime()
        record = scene_sharing().run(request, task_id, lambda shared: here.run(request, task_id, shared))
        if record.worker is None:  # answered from another event's run on the same frame
            record = record.model_copy(update={"worker": worker, "device": here.device})
        return record
    except SoftTimeLimitExceeded:
        return ModelRecord(model=request.model, status="timeout", worker=worker,
                           device=_runtime.device if _runtime else None,
                           error=f"exceeded the {settings.model_soft_time_limit:g}s soft time limit")
    except Exception as exc:  # never raise into the chord: the callback would not fire
        log.exception("run_model %s for %s failed", request.model, request.event_id)
        return ModelRecord(model=request.model, status="error", worker=worker, error=f"{type(exc).__name__}: {exc}")


def shadow_name(task: Any, args: tuple, kwargs: dict, options: dict) -> str:
    """What Flower and task events call each run_model: `run_model:<model>`, so the tasks can be told apart."""
    request = args[0] if args else kwargs.get("request")
    model = request.get("model") if isinstance(request, dict) else None
    return f"run_model:{model}" if model else "run_model"


# ignore_result: the record reaches the chord (and the sweeper) through the chord's own join in the result
# backend; storing it again as celery-task-meta costs every model task a write and a publish for nobody.
@app.task(name="run_model", bind=True, shadow_name=shadow_name, ignore_result=True)
def run_model(self, request: dict[str, Any]) -> dict[str, Any]:
    """Run one ModelRequest on this worker's device and return its ModelRecord as JSON (only in a device worker:
    anywhere else the request is answered with an error record, and no model is loaded)."""
    if not get_settings().is_device_worker:
        model = request.get("model") if isinstance(request, dict) else None
        log.warning("run_model refused in a worker that is not a device worker (%s)", _node["name"] or os.getpid())
        return ModelRecord(model=str(model or "unknown")[:64], status="error", worker=_node["name"],
                           error="run_model runs only in device workers").model_dump(mode="json")
    try:
        parsed = ModelRequest.model_validate(request)
    except ValidationError as exc:  # only the router writes requests; still, never raise into the chord
        model = request.get("model") if isinstance(request, dict) else None
        return ModelRecord(model=str(model or "unknown"), status="error", worker=_node["name"],
                           error=f"malformed model request: {exc.errors()[0]['msg']}").model_dump(mode="json")
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    crashes = crashes_of(self.request.id, redelivered)
    return run_request(parsed, self.request.id, crashes).model_dump(mode="json")


def model_tasks(requests: list[ModelRequest], placement: Mapping[str, str], task_ids: Mapping[str, str]) -> list[Any]:
    """One run_model signature per request, on its placed queue under its task id (a chord's header)."""
    return [
        run_model.si(request.model_dump(mode="json")).set(
            queue=placement[request.model], task_id=task_ids[request.model],
            argsrepr=f"({request.model} for {request.event_id})", kwargsrepr="{}",  # not a repr of every argument
        )
        for request in requests
    ]
