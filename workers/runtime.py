"""A device worker's model runs: requests in, records out, through one model cache and per-model batchers.

Created lazily in the worker process that owns the device (the prefork child, or the threads pool's process),
so a parent that forks never touches CUDA. The same runtime serves the direct pipeline of scripts/bench.py.
Beside it, each with one job: workers.status (what it publishes), workers.crash_guard (journal, watchdog,
isolation) and workers.model_services (warm-up, preload, unload and their commands).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded

from model_cache import ModelCache, ModelSkipped, ModelSpec
from workers.batching import InferenceTimeout, MicroBatcher, infer_many
from workers.crash_guard import CrashGuard
from workers.frames import DecodedFrames
from workers.images import keep_decode_memory
from workers.metrics import BATCH_SIZE, INFERENCE_SECONDS, MODEL_RECORDS, CacheMetrics, start_model_series
from workers.model_files import check_weights
from workers.model_services import ModelServices
from workers.models.base import InferenceSkipped, ModelInput
from workers.records import ModelRecord, ModelRequest
from workers.registry import MODEL_CODE_LOCK, REGISTRY, ModelEntry
from workers.settings import Settings
from workers.state import register_device_queue
from workers.status import StatusPublisher

log = logging.getLogger(__name__)

CPU_DEFAULT_SHARE_MB = 4096


class GpuUnavailable(RuntimeError):
    """A worker started for a GPU cannot use it (and CPU_FALLBACK does not allow the CPU instead)."""


def pick_device(settings: Settings) -> str:
    """DEVICE when set; else cuda when this (pinned) process sees a GPU, else cpu.

    A gpu.N worker that sees no usable GPU (no driver, no device visible, a CPU-only torch) raises GpuUnavailable
    instead of quietly running on the CPU, unless CPU_FALLBACK=1 allows it. Checked with NVML where torch can
    (PYTORCH_NVML_BASED_CUDA_CHECK), so a prefork parent that checks before forking does not initialise CUDA.
    """
    if settings.device:
        return settings.device
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if settings.device_queue.startswith("gpu.") and settings.is_device_worker:
        why = (f"this worker was started for queue {settings.device_queue}, but torch {torch.__version__} sees no usable "
               f"GPU (CUDA_VISIBLE_DEVICES={settings.launch.cuda_visible_devices}, torch built for CUDA "
               f"{torch.version.cuda or 'none'})")
        if not settings.cpu_fallback:
            raise GpuUnavailable(f"{why}: check the driver and the container's GPU reservation, or set CPU_FALLBACK=1 "
                                 f"to run it on the CPU on purpose")
        log.warning("%s: running on the CPU (CPU_FALLBACK=1)", why)
    return "cpu"


def memory_budget_bytes(device: str, share_mb: int | None) -> int:
    """The worker's model memory share: MEMORY_SHARE_MB, else 90% of the GPU's memory, else 4 GiB of RAM."""
    if share_mb:
        return share_mb * 1024 * 1024
    if device.startswith("cuda"):
        import torch

        _, total = torch.cuda.mem_get_info()
        return int(total * 0.9)
    return CPU_DEFAULT_SHARE_MB * 1024 * 1024


@dataclass(frozen=True)
class Job:
    """One request as its model's runner sees it: the detection, and the task it answers (for the journal)."""

    inputs: ModelInput
    task_id: str | None = None


class DeviceRuntime:
    """Runs model requests on one device through one ModelCache.

    In a threads pool (settings.device_pool == "threads") an event's models run side by side: each model has a
    runner thread fed by the micro-batcher, a caller gives up at the soft time limit, and the crash guard's
    watchdog ends the process when a call runs past the hard limit. In a prefork child the call runs in the
    task's own thread. `status` tells Redis what it holds (given a client), `crashes` guards every model call,
    and `services` takes preload/unload commands.
    """

    def __init__(self, settings: Settings, frames: DecodedFrames, worker: str, client: redis.Redis | None = None):
        self.settings = settings
        self.client = client
        self.worker = worker
        self.queue = settings.device_queue
        self.device = pick_device(settings)
        self.frames = frames
        keep_decode_memory()  # this process decodes a frame per event
        self._specs: dict[str, ModelSpec] = {}
        self._verified: set[str] = set()  # models whose accepted weights were logged
        self.cache = ModelCache(
            memory_budget_bytes(self.device, settings.memory_share_mb),
            idle_seconds=settings.idle_evict_seconds,
            device=self.device,
            on_change=lambda: self.status.publish(),
            observer=CacheMetrics(),
        )
        # Every inference goes through the batcher: one call per model at a time (ultralytics predictors are not
        # thread-safe), batched when several requests for a model are waiting.
        self.threaded = settings.device_pool == "threads"
        self.batcher: MicroBatcher[Job] = MicroBatcher(
            self.run_batch, max_size=settings.model_batch_size, max_wait=settings.model_batch_wait_ms / 1000,
            inline=not self.threaded,
        )
        self.in_flight = 0  # model tasks being run now (placement weighs it with the queue's backlog)
        self.task_ms = 0.0  # a moving average of a model task's time here
        self._in_flight_lock = threading.Lock()
        self.status = StatusPublisher(self.cache, worker, settings.heartbeat_seconds, self.state, client)
        self.crashes = CrashGuard(settings, self.queue, self.threaded)
        self.services = ModelServices(self)
        start_model_series(REGISTRY)

    # -- models -------------------------------------------------------------------------------
    def spec_for(self, entry: ModelEntry) -> ModelSpec:
        """The cache's view of a registry entry: its estimate, priority, and how to load and unload it."""
        if entry.name not in self._specs:
            self._specs[entry.name] = ModelSpec(
                name=entry.name, estimated_mb=self.estimated_mb(entry), priority=entry.priority,
                loader=lambda: self.load_family(entry), unloader=lambda wrapper: wrapper.unload(),
            )
        return self._specs[entry.name]

    def load_family(self, entry: ModelEntry) -> Any:
        """The model's family wrapper, built from its weights on this device and loaded."""
        zoo = self.settings.zoo
        path = entry.weights_path(self.settings.models_dir, zoo.model_paths)
        if not path.exists():
            raise FileNotFoundError(
                f"weights for {entry.name} missing at {path}: run scripts/download_models.py "
                f"or scripts/make_tiny_models.py, or set {entry.path_env}"
            )
        self.verify_weights(entry)
        with MODEL_CODE_LOCK:  # a load imports its libraries lazily (see MODEL_CODE_LOCK)
            wrapper = entry.load_class(zoo.model_families)(str(path), self.device, zoo)
            wrapper.load()
        return wrapper

    def verify_weights(self, entry: ModelEntry) -> str:
        """Why the model's weights may be loaded, or WeightsRefused (workers.model_files.check_weights). Another
        implementation (<NAME>_MODEL_FAMILY) reads what it likes: the registry's pin is for the registry's family."""
        zoo = self.settings.zoo
        if entry.name in zoo.model_families:
            return f"{zoo.model_families[entry.name]} (<NAME>_MODEL_FAMILY): its weights are its own affair"
        reason = check_weights(entry, self.weights_path(entry), own=entry.name in zoo.own_weights)
        if entry.name not in self._verified:
            log.info("%s: weights accepted: %s", entry.name, reason)
            self._verified.add(entry.name)
        return reason

    def weights_path(self, entry: ModelEntry) -> Any:
        return entry.weights_path(self.settings.models_dir, self.settings.zoo.model_paths)

    def family_class(self, entry: ModelEntry) -> type:
        return entry.load_class(self.settings.zoo.model_families)

    def weights_estimate_bytes(self, entry: ModelEntry) -> int | None:
        """What entry's weights on disk will take on this device (the family's dtype here), or None without them."""
        path = self.weights_path(entry)
        if not path.exists():
            return None
        family = self.family_class(entry)
        estimate = getattr(family, "estimate_bytes", None)
        try:
            return estimate(path, self.device) if estimate is not None else None
        except Exception as exc:  # an unreadable file is found out by the load; the registry figure stands in
            log.warning("cannot size the weights of %s at %s: %s", entry.name, path, exc)
            return None

    def estimated_mb(self, entry: ModelEntry) -> float:
        """The charge before a first load measures the model: its weights on disk when present, else the registry's
        figure (see ESTIMATE_SOURCES). The cache replaces either with the measured footprint after the first load."""
        estimate = self.weights_estimate_bytes(entry)
        if estimate:
            log.info("%s: estimated %.1f MB from its weights on disk (registry: %d MB)",
                     entry.name, estimate / 2**20, entry.estimated_mb)
            return estimate / 2**20
        return float(entry.estimated_mb)

    # -- requests -----------------------------------------------------------------------------
    def inputs_for(self, request: ModelRequest, with_buffer: bool = True,
                   shared: dict[str, Any] | None = None) -> ModelInput:
        """The decoded frame and boxes; the frame buffer only for models that read it."""
        return ModelInput(
            frame=self.frames.get(request.frame_key),
            bbox=request.bbox,
            detection_type=request.detection_type,
            face_bbox=request.face_bbox,
            frames=[self.frames.get(key) for key in request.buffer_keys] if with_buffer else [],
            shared=shared,
        )

    def inputs_waiting_for_redis(self, request: ModelRequest, with_buffer: bool = True,
                                 shared: dict[str, Any] | None = None) -> ModelInput:
        """inputs_for, read again with backoff while Redis is unreachable (restarting), up to the soft time limit: a
        restart is not the frame's fault (it made the event partial, "frame unavailable", issue 28)."""
        deadline = time.monotonic() + self.settings.model_soft_time_limit
        delay = 0.1
        while True:
            try:
                return self.inputs_for(request, with_buffer=with_buffer, shared=shared)
            except (redis.ConnectionError, redis.TimeoutError) as exc:  # LOADING is a ConnectionError too
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("frame of %s: Redis is unreachable (%s); reading again in %.1f s", request.event_id,
                            str(exc)[:160], delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def run(self, request: ModelRequest, task_id: str | None = None,
            shared: dict[str, Any] | None = None) -> ModelRecord:
        """Load (or reuse) the model and run it; every failure comes back as a record. `shared`: the model's frame
        outputs another event on this frame computed (the family computes only its per-event part)."""
        record = ModelRecord(model=request.model, status="ok", device=self.device, worker=self.worker)
        entry = REGISTRY.get(request.model)
        started = time.perf_counter()
        with self._in_flight_lock:
            self.in_flight += 1
        try:
            if entry is None:
                record = record.failed("error", f"unknown model {request.model!r}")
            else:
                record = self._run_entry(entry, request, record, task_id, shared)
        finally:
            with self._in_flight_lock:
                self.in_flight -= 1
                elapsed_ms = (time.perf_counter() - started) * 1000
                self.task_ms = elapsed_ms if self.task_ms == 0 else 0.9 * self.task_ms + 0.1 * elapsed_ms
        MODEL_RECORDS.labels(record.model, record.status).inc()
        if record.status == "ok":
            INFERENCE_SECONDS.labels(record.model).observe(record.infer_ms / 1000)
        return record

    def _run_entry(self, entry: ModelEntry, request: ModelRequest, record: ModelRecord,
                   task_id: str | None, shared: dict[str, Any] | None = None) -> ModelRecord:
        try:
            inputs = self.inputs_waiting_for_redis(request, with_buffer=entry.needs_frames, shared=shared)
        except Exception as exc:  # the frame expired or cannot be decoded, or Redis stayed away
            return record.failed("error", f"frame unavailable: {exc}")
        try:
            loaded = self.cache.get(self.spec_for(entry))
        except ModelSkipped as exc:
            return record.failed("skipped", str(exc))
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:
            log.exception("loading %s failed", entry.name)
            return record.failed("error", f"load failed: {type(exc).__name__}: {exc}")
        record = record.model_copy(update={"cache_hit": loaded.hit, "load_ms": round(loaded.load_ms, 2)})
        return self._infer(entry.name, Job(inputs, task_id), record)

    def _infer(self, model: str, job: Job, record: ModelRecord) -> ModelRecord:
        started = time.perf_counter()
        soft_limit = self.settings.model_soft_time_limit if self.threaded else None
        try:
            data = self.batcher.submit(model, job, timeout=soft_limit)
        except InferenceSkipped as exc:
            return record.failed("skipped", str(exc))
        except InferenceTimeout:
            return record.failed("timeout", f"exceeded the {soft_limit:g}s soft time limit")
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:
            log.exception("inference of %s failed", model)
            return record.failed("error", f"{type(exc).__name__}: {exc}")
        infer_ms = (time.perf_counter() - started) * 1000
        self.status.publish_soon()
        return record.model_copy(update={"data": data, "infer_ms": round(infer_ms, 2)})

    def run_batch(self, model: str, jobs: list[Job]) -> list[Any]:
        """One batched call of model (the micro-batcher's runner): an answer or an exception per input, guarded
        by the crash guard (journaled, watched, isolated after a crash)."""
        tasks = [job.task_id for job in jobs if job.task_id]
        inputs = [job.inputs for job in jobs]
        BATCH_SIZE.labels(model).observe(len(jobs))
        with self.crashes.guarding(model, tasks):
            return self.cache.run_with_oom_retry(self.spec_for(REGISTRY[model]),
                                                 lambda wrapper: infer_many(wrapper, inputs))

    # -- lifetime -----------------------------------------------------------------------------
    def state(self, snapshot: dict[str, Any] | None = None) -> dict[str, Any]:
        """What this worker publishes: its cache snapshot (taken now unless given), identity and counters."""
        stats = self.batcher.stats()
        return (snapshot or self.cache.snapshot()) | {
            "worker": self.worker, "queue": self.queue, "device": self.device,
            "pid": os.getpid(), "updated_at": time.time(), "frame_bytes_read": self.frames.bytes_read,
            "batches": stats.batches, "batched_requests": stats.items, "largest_batch": stats.largest,
            "batch_limit": self.batcher.max_size, "in_flight": self.in_flight, "task_ms": round(self.task_ms, 2),
            "ready": self.services.ready.is_set(), "start_up": self.services.stage,
        }

    def start(self) -> DeviceRuntime:
        """Announce this worker and its queue, and start its heartbeat (and the watchdog, in a threads pool)."""
        if self.client is not None:
            try:
                register_device_queue(self.client, self.queue)
            except redis.RedisError as exc:
                log.warning("could not register the device queue %s: %s", self.queue, exc)
        self.status.start()
        self.crashes.start()
        return self

    def stop(self) -> None:
        self.services.stop()
        self.crashes.stop()
        self.cache.clear()
        self.status.stop()
