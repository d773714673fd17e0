"""A device worker's model commands: warm-up at start, preload and unload on request, and the listener that
takes those requests from Redis."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from model_cache import ModelSkipped
from model_cache.spec import Priority
from workers import model_commands
from workers.registry import MODEL_CODE_LOCK, REGISTRY, ModelEntry


class Runtime(Protocol):
    """What the model commands need of the device runtime (workers.runtime.DeviceRuntime): its cache, where it
    runs, and how it finds, checks and describes a registered model's weights. Named here so the services do not
    import the runtime that owns them."""

    cache: Any
    client: Any
    device: str
    settings: Any
    status: Any
    worker: str

    def family_class(self, entry: ModelEntry) -> type: ...
    def spec_for(self, entry: ModelEntry) -> Any: ...
    def verify_weights(self, entry: ModelEntry) -> str: ...
    def weights_path(self, entry: ModelEntry) -> Path: ...

log = logging.getLogger(__name__)

RESIDENTS = "residents"  # PRELOAD_MODELS' word for the resident scene models, when the worker has room for them
RESIDENT_SHARE = 0.5  # residents are preloaded when together they take at most this share of the memory budget


def unknown_model(name: str) -> str:
    return f"unknown model {name!r}; known: {', '.join(REGISTRY)}"


class ModelServices:
    """Preload, unload and warm-up over one runtime's cache, and the commands that ask for them."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.cache = runtime.cache
        self._started = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.command_listener: threading.Thread | None = None
        self.ready = threading.Event()  # set once warm-up and PRELOAD_MODELS are done (the worker's /readyz)
        self.stage = "not started"  # what start-up is doing: not started, warming up, preloading, done

    def warm_up(self, names: list[str] | None = None) -> dict[str, float]:
        """Check each present model's weights against its pin (hashing them once, so a first load does not), import
        what loading it will import (default: every model whose weights are present) and, on a GPU, create the CUDA
        context, so the first load in this process is not also the slowest. Milliseconds per step; a step that fails
        is logged and skipped (the load will report it)."""
        runtime = self.runtime
        timings: dict[str, float] = {}
        started = time.perf_counter()
        import torch

        if runtime.device.startswith("cuda"):
            with torch.inference_mode():
                warm = torch.ones(64, 64, device=runtime.device)
                (warm @ warm).sum().item()  # the context, the allocator and cuBLAS
            timings["cuda"] = round((time.perf_counter() - started) * 1000, 1)
        for entry in [REGISTRY[n] for n in (names or REGISTRY) if n in REGISTRY]:
            path = runtime.weights_path(entry)
            family = runtime.family_class(entry)
            if not path.exists() or not hasattr(family, "import_libraries"):
                continue
            started = time.perf_counter()
            try:
                runtime.verify_weights(entry)
                with MODEL_CODE_LOCK:
                    family.import_libraries(path)
            except Exception as exc:
                log.warning("warming up %s failed (its load will tell why): %s", entry.name, exc)
            timings[entry.name] = round((time.perf_counter() - started) * 1000, 1)
        log.info("warmed up on %s in %.0f ms: %s", runtime.device, sum(timings.values()), timings)
        return timings

    def preload_names(self) -> list[str]:
        """PRELOAD_MODELS with `residents` replaced by the resident scene models (SCENE_MODELS, weights present)
        when their estimates together take at most RESIDENT_SHARE of this worker's budget, else by none."""
        settings = self.runtime.settings
        names: list[str] = []
        for name in settings.preload_models:
            if name != RESIDENTS:
                if name not in names:
                    names.append(name)
                continue
            entries = [REGISTRY[n] for n in settings.scene_models if n in REGISTRY
                       and REGISTRY[n].priority == Priority.RESIDENT and self.runtime.weights_path(REGISTRY[n]).exists()]
            need = sum(self.runtime.spec_for(entry).estimated_bytes for entry in entries)
            if need > RESIDENT_SHARE * self.cache.budget_bytes:
                log.info("not preloading the resident models %s: %.0f MB is more than half of this worker's %.0f MB",
                         [e.name for e in entries], need / 2**20, self.cache.budget_bytes / 2**20)
                continue
            names.extend(entry.name for entry in entries if entry.name not in names)
        return names

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
                loaded = self.cache.get(self.runtime.spec_for(entry))
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

    def unload(self, name: str) -> dict[str, Any]:
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

    def execute(self, command: model_commands.ModelCommand) -> dict[str, Any]:
        """A ModelCommand's outcome: per model what happened, and the cache's memory afterwards."""
        if command.action == "preload":
            results = self.preload(list(command.models))
        else:
            results = [self.unload(name) for name in command.models]
        snapshot = self.cache.snapshot()
        return {"worker": self.runtime.worker, "action": command.action, "results": results,
                "used_bytes": snapshot["used_bytes"], "budget_bytes": snapshot["budget_bytes"],
                "models": [m["name"] for m in snapshot["models"]]}

    def start(self) -> None:
        """What a device worker's model process starts once its runtime exists (idempotent):

        - takes preload/unload commands: in this process (a threads pool's control commands find it here) and,
          given a Redis client, from `workers:commands:<worker>` on a listener thread (the prefork parent
          publishes there);
        - on a background thread, warms up (library imports, CUDA context) and then loads PRELOAD_MODELS; then
          `ready` is set and the worker's published state says so (its /readyz reads that).

        Call it right after the runtime is created and started, in the process that holds the cache (the
        prefork child at worker_process_init, or the threads pool's process).
        """
        with self._lock:
            if self._started:
                return
            self._started = True
        model_commands.register_local(self.execute)
        client = self.runtime.client
        if client is not None:
            self.command_listener = threading.Thread(
                target=model_commands.listen, args=(client, self.runtime.worker, self.execute, self._stop),
                name="model-commands", daemon=True)
            self.command_listener.start()

        def warm_up_and_preload() -> None:
            try:
                self.stage = "warming up"
                self.warm_up()
                wanted = self.preload_names()
                if wanted and not self._stop.is_set():
                    self.stage = "preloading " + ",".join(wanted)
                    outcomes = self.preload(wanted)
                    log.info("preloaded on start: %s", ", ".join(
                        f"{o['model']} {o['status']}" + (f" in {o['load_ms']:.0f} ms" if "load_ms" in o else "")
                        for o in outcomes))
            finally:  # done, whatever each step's outcome (a failed load is in the logs and `loaded_models`)
                self.stage = "done"
                self.ready.set()
                self.runtime.status.publish()

        threading.Thread(target=warm_up_and_preload, name="model-warm-up", daemon=True).start()

    def stop(self) -> None:
        """Stop taking commands: the listener ends and this process no longer offers its cache to local callers."""
        self._stop.set()
        model_commands.unregister_local(self.execute)
