"""A device worker's process-local state: its model cache, decoded frames, batchers, and the status it publishes.

Created lazily in the worker process that owns the device (the prefork child, or the threads pool's process),
so a parent that forks never touches CUDA. The same runtime serves the direct pipeline of scripts/bench.py.
"""

from __future__ import annotations

import contextlib
import json
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
from workers.frames import DecodedFrames
from workers.images import keep_decode_memory
from workers.journal import CallJournal
from workers.metrics import INFERENCE_SECONDS, MEMORY_SHARE, MEMORY_USED, MODEL_RECORDS, CacheMetrics
from workers.metrics import record_model_bytes
from workers.models.base import InferenceSkipped, ModelInput
from workers.records import ModelRecord, ModelRequest
from workers.registry import MODEL_CODE_LOCK, REGISTRY, ModelEntry
from workers.settings import Settings
from workers.state import publish_state, withdraw_state
from workers.watchdog import Call, CallWatchdog, exit_process

log = logging.getLogger(__name__)

CPU_DEFAULT_SHARE_MB = 4096


def pick_device(forced: str | None = None) -> str:
    """cuda when this (pinned) process sees a GPU, else cpu; DEVICE=cpu (settings.device) forces the CPU."""
    if forced:
        return forced
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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
    """Runs model requests on one device through one ModelCache and (given a Redis client) tells Redis what it holds.

    In a threads pool (settings.device_pool == "threads") an event's models run side by side: each model has a
    runner thread fed by the micro-batcher, a caller gives up at the soft time limit, and the watchdog ends the
    process when a call runs past the hard limit. In a prefork child the call runs in the task's own thread.
    """

    PUBLISH_EVERY = 1.0  # seconds between state publishes caused by tasks alone
    ISOLATION_SECONDS = 60.0  # after a crash, model calls run one at a time this long (see open_journal)

    def __init__(self, settings: Settings, frames: DecodedFrames, worker: str, client: redis.Redis | None = None):
        self.settings = settings
        self.client = client
        self.worker = worker
        self.queue = settings.device_queue
        self.device = pick_device(settings.device)
        self.frames = frames
        keep_decode_memory()  # this process decodes a frame per event
        self._specs: dict[str, ModelSpec] = {}
        self.cache = ModelCache(
            memory_budget_bytes(self.device, settings.memory_share_mb),
            idle_seconds=settings.idle_evict_seconds,
            device=self.device,
            on_change=self.publish,
            observer=CacheMetrics(),
        )
        # Every inference goes through the batcher: one call per model at a time (ultralytics predictors are not
        # thread-safe), batched when several requests for a model are waiting.
        self.threaded = settings.device_pool == "threads"
        self.batcher: MicroBatcher[Job] = MicroBatcher(
            self.run_batch, max_size=settings.model_batch_size, max_wait=settings.model_batch_wait_ms / 1000,
            inline=not self.threaded,
        )
        self.watchdog = CallWatchdog(settings.model_time_limit, on_overrun=self.overrun) if self.threaded else None
        self.journal: CallJournal | None = None
        self.isolate_until = 0.0
        self._isolation = threading.Lock()
        self._published_at = 0.0
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

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
        with MODEL_CODE_LOCK:  # a load imports its libraries lazily (see MODEL_CODE_LOCK)
            wrapper = entry.load_class(zoo.model_families)(str(path), self.device, zoo)
            wrapper.load()
        return wrapper

    def inputs_for(self, request: ModelRequest, with_buffer: bool = True) -> ModelInput:
        """The decoded frame and boxes; the frame buffer only for models that read it."""
        return ModelInput(
            frame=self.frames.get(request.frame_key),
            bbox=request.bbox,
            detection_type=request.detection_type,
            face_bbox=request.face_bbox,
            frames=[self.frames.get(key) for key in request.buffer_keys] if with_buffer else [],
        )

    def run(self, request: ModelRequest, task_id: str | None = None) -> ModelRecord:
        """Load (or reuse) the model and run it; every failure comes back as a record."""
        record = ModelRecord(model=request.model, status="ok", device=self.device, worker=self.worker)
        entry = REGISTRY.get(request.model)
        if entry is None:
            record = record.failed("error", f"unknown model {request.model!r}")
        else:
            record = self._run_entry(entry, request, record, task_id)
        MODEL_RECORDS.labels(record.model, record.status).inc()
        if record.status == "ok":
            INFERENCE_SECONDS.labels(record.model).observe(record.infer_ms / 1000)
        return record

    def _run_entry(self, entry: ModelEntry, request: ModelRequest, record: ModelRecord,
                   task_id: str | None) -> ModelRecord:
        try:
            inputs = self.inputs_for(request, with_buffer=entry.needs_frames)
        except Exception as exc:  # the frame expired or cannot be decoded
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
        self.publish_soon()
        return record.model_copy(update={"data": data, "infer_ms": round(infer_ms, 2)})

    def run_batch(self, model: str, jobs: list[Job]) -> list[Any]:
        """One batched call of model (the micro-batcher's runner): an answer or an exception per input.

        The call is journaled (so a crash is blamed on the tasks inside it) and watched (hard time limit).
        """
        tasks = [job.task_id for job in jobs if job.task_id]
        inputs = [job.inputs for job in jobs]
        isolating = time.monotonic() < self.isolate_until
        with self._isolation if isolating else contextlib.nullcontext():
            if self.journal is not None:
                self.journal.started(tasks)
            try:
                with self.watchdog.watching(model, tuple(tasks)) if self.watchdog else contextlib.nullcontext():
                    return self.cache.run_with_oom_retry(self.spec_for(REGISTRY[model]),
                                                         lambda wrapper: infer_many(wrapper, inputs))
            finally:
                if self.journal is not None:
                    self.journal.finished(tasks)

    # -- crashes --------------------------------------------------------------------------------------
    def open_journal(self) -> list[str]:
        """Start this process's call journal; returns the tasks a dead predecessor left inside a model call.

        After a crash the calls run one at a time for ISOLATION_SECONDS: the predecessor died with several
        calls in flight and cannot tell which one killed it, but the next crash, if any, names its culprit
        alone, so a poison task does not use up the redelivery cap of the tasks that ran beside it.
        """
        self.journal = CallJournal(self.settings.journal_dir / self.settings.pool_id / f"{self.queue}.journal")
        blamed, suspects = self.journal.blamed(), self.journal.unfinished()
        self.journal.open()
        if blamed:  # the watchdog ended it and named the call: nobody else is suspected
            return blamed
        if suspects:
            self.isolate_until = time.monotonic() + self.ISOLATION_SECONDS
        return suspects

    def overrun(self, call: Call, limit: float) -> None:
        """The watchdog's reaction: name the overrunning call's tasks in the journal, then end the process."""
        if self.journal is not None:
            self.journal.blame(list(call.tasks))
        exit_process(call, limit)

    # -- published state ----------------------------------------------------------------------
    def state(self, snapshot: dict[str, Any] | None = None) -> dict[str, Any]:
        """What this worker publishes: its cache snapshot (taken now unless given), identity and counters."""
        stats = self.batcher.stats()
        return (snapshot or self.cache.snapshot()) | {
            "worker": self.worker, "queue": self.queue, "device": self.device,
            "pid": os.getpid(), "updated_at": time.time(), "frame_bytes_read": self.frames.bytes_read,
            "batches": stats.batches, "batched_requests": stats.items, "largest_batch": stats.largest,
            "batch_limit": self.batcher.max_size,
        }

    def publish(self) -> None:
        """SET workers:state:<worker> with a TTL of three heartbeats: a dead worker drops out by itself."""
        self._published_at = time.monotonic()
        snapshot = self.cache.snapshot()
        MEMORY_USED.labels(self.worker).set(snapshot["used_bytes"])
        MEMORY_SHARE.labels(self.worker).set(snapshot["budget_bytes"])
        record_model_bytes(self.worker, snapshot)
        if self.client is None:
            return
        ttl = max(1, int(self.settings.heartbeat_seconds * 3))
        try:
            publish_state(self.client, self.worker, json.dumps(self.state(snapshot)), ttl)
        except redis.RedisError as exc:
            log.warning("could not publish worker state: %s", exc)

    def publish_soon(self) -> None:
        """Publish after a task at most every PUBLISH_EVERY seconds: loads and evictions publish at once
        (on_change), so routing never waits; only the hit counters and ages may lag that long."""
        if time.monotonic() - self._published_at >= self.PUBLISH_EVERY:
            self.publish()

    def start_heartbeat(self) -> None:
        """Republish state and release idle models every HEARTBEAT_SECONDS, from a daemon thread."""

        def beat() -> None:
            while not self._stop.wait(self.settings.heartbeat_seconds):
                try:
                    self.cache.release_idle()
                finally:
                    self.publish()

        self._heartbeat = threading.Thread(target=beat, name="cache-heartbeat", daemon=True)
        self._heartbeat.start()

    def start(self) -> "DeviceRuntime":
        """Announce this worker, and start its heartbeat (and the watchdog, in a threads pool)."""
        self.publish()
        self.start_heartbeat()
        if self.watchdog is not None:
            self.watchdog.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.journal is not None:
            self.journal.close()
        self.cache.clear()
        if self.client is not None:
            withdraw_state(self.client, self.worker)

    # -- estimates, start-up services, preload and unload ------------------------------------------------------
    _services_started = False  # start_model_services() ran in this runtime
    _services_lock = threading.Lock()

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

    def warm_up(self, names: list[str] | None = None) -> dict[str, float]:
        """Import what loading each model will import (default: every model whose weights are present) and, on a
        GPU, create the CUDA context, so the first load in this process is not also the slowest. Milliseconds per
        step; a step that fails is logged and skipped (the load will report it)."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        import torch

        if self.device.startswith("cuda"):
            with torch.inference_mode():
                warm = torch.ones(64, 64, device=self.device)
                (warm @ warm).sum().item()  # the context, the allocator and cuBLAS
            timings["cuda"] = round((time.perf_counter() - started) * 1000, 1)
        for entry in [REGISTRY[n] for n in (names or REGISTRY) if n in REGISTRY]:
            path = self.weights_path(entry)
            family = self.family_class(entry)
            if not path.exists() or not hasattr(family, "import_libraries"):
                continue
            started = time.perf_counter()
            try:
                with MODEL_CODE_LOCK:
                    family.import_libraries(path)
            except Exception as exc:
                log.warning("warming up %s failed (its load will tell why): %s", entry.name, exc)
            timings[entry.name] = round((time.perf_counter() - started) * 1000, 1)
        log.info("warmed up on %s in %.0f ms: %s", self.device, sum(timings.values()), timings)
        return timings

    def preload(self, names: list[str]) -> list[dict[str, Any]]:
        """Load each named model now (in order); one outcome per name, never raising."""
        outcomes = []
        for name in names:
            entry = REGISTRY.get(name)
            if entry is None:
                outcomes.append({"model": name, "status": "error", "detail": unknown_model(name)})
                continue
            if name in self.cache:
                outcomes.append({"model": name, "status": "already loaded"})
                continue
            try:
                loaded = self.cache.get(self.spec_for(entry))
            except ModelSkipped as exc:
                outcomes.append({"model": name, "status": "skipped", "detail": str(exc)})
            except Exception as exc:
                log.exception("preloading %s failed", name)
                outcomes.append({"model": name, "status": "error", "detail": f"{type(exc).__name__}: {exc}"})
            else:
                held = next((m for m in self.cache.snapshot()["models"] if m["name"] == name), {})
                outcomes.append({"model": name, "status": "loaded" if not loaded.hit else "already loaded",
                                 "load_ms": round(loaded.load_ms, 1), "bytes": held.get("bytes"),
                                 "estimated_bytes": held.get("estimated_bytes"), "evicted": loaded.evicted})
        return outcomes

    def unload_model(self, name: str) -> dict[str, Any]:
        """Unload one model now (residents too); a model whose inference is running is left alone."""
        if name not in REGISTRY:
            return {"model": name, "status": "error", "detail": unknown_model(name)}
        held = next((m for m in self.cache.snapshot()["models"] if m["name"] == name), None)
        if held is None:
            return {"model": name, "status": "not loaded"}
        if held["in_use"]:
            return {"model": name, "status": "in use", "detail": "its inference is running; try again"}
        return {"model": name, "status": "unloaded" if self.cache.evict(name) else "not loaded",
                "freed_bytes": held["bytes"]}

    def execute_command(self, command: Any) -> dict[str, Any]:
        """A ModelCommand's outcome: per model what happened, and the cache's memory afterwards."""
        if command.action == "preload":
            results = self.preload(list(command.models))
        else:
            results = [self.unload_model(name) for name in command.models]
        snapshot = self.cache.snapshot()
        return {"worker": self.worker, "action": command.action, "results": results,
                "used_bytes": snapshot["used_bytes"], "budget_bytes": snapshot["budget_bytes"],
                "models": [m["name"] for m in snapshot["models"]]}

    def start_model_services(self) -> None:
        """What a device worker's model process starts once its runtime exists (idempotent):

        - takes preload/unload commands: in this process (a threads pool's control commands find it here) and,
          given a Redis client, from `workers:commands:<worker>` on a listener thread (the prefork parent
          publishes there);
        - on a background thread, warms up (library imports, CUDA context) and then loads PRELOAD_MODELS.

        Call it right after the runtime is created and its heartbeat started, in the process that holds the
        cache (the prefork child at worker_process_init, or the threads pool's process).
        """
        with self._services_lock:
            if self._services_started:
                return
            self._services_started = True
        from workers import model_commands

        model_commands.register_local(self.execute_command)
        if self.client is not None:
            self.command_listener = threading.Thread(
                target=model_commands.listen, args=(self.client, self.worker, self.execute_command, self._stop),
                name="model-commands", daemon=True)
            self.command_listener.start()

        def warm_up_and_preload() -> None:
            self.warm_up()
            wanted = list(self.settings.preload_models)
            if wanted and not self._stop.is_set():
                outcomes = self.preload(wanted)
                log.info("preloaded on start: %s", ", ".join(f"{o['model']} {o['status']}" for o in outcomes))

        threading.Thread(target=warm_up_and_preload, name="model-warm-up", daemon=True).start()


def unknown_model(name: str) -> str:
    return f"unknown model {name!r}; known: {', '.join(REGISTRY)}"
