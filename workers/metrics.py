"""Prometheus metrics of a device worker (models, cache, memory), and serving /metrics from a worker process.

prometheus_client's multiprocess mode: the launcher gives every worker its own PROMETHEUS_MULTIPROC_DIR and
METRICS_PORT; children write samples to files there and the parent serves them all on /metrics.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from model_cache import CacheObserver
from workers.settings import MetricsSettings

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

MODEL_LOADS = Counter("model_zoo_model_loads_total", "Models loaded into a worker's cache", ["model"])
MODEL_UNLOADS = Counter("model_zoo_model_unloads_total", "Models unloaded from a worker's cache", ["model"])
MODEL_EVICTIONS = Counter(
    "model_zoo_model_evictions_total", "Models that left a cache, by reason (room, idle, oom, ...)", ["model", "reason"]
)
MODEL_SKIPS = Counter("model_zoo_model_skips_total", "Requests refused because the model could not fit", ["model"])
MODEL_LOAD_SECONDS = Histogram("model_zoo_model_load_seconds", "Time to load a model", ["model"], buckets=LATENCY_BUCKETS)
INFERENCE_SECONDS = Histogram("model_zoo_inference_seconds", "Time of one model inference", ["model"], buckets=LATENCY_BUCKETS)
CACHE_HITS = Counter("model_zoo_cache_hits_total", "Model requests served by a resident model", ["model"])
CACHE_MISSES = Counter("model_zoo_cache_misses_total", "Model requests that needed a load", ["model"])
MODEL_RECORDS = Counter("model_zoo_model_records_total", "Model task outcomes", ["model", "status"])
MEMORY_USED = Gauge("model_zoo_memory_used_bytes", "Model memory in use by the cache", ["worker"], multiprocess_mode="livemax")
MEMORY_SHARE = Gauge("model_zoo_memory_share_bytes", "The worker's model memory budget", ["worker"], multiprocess_mode="livemax")
MODEL_BYTES = Gauge(
    "model_zoo_model_bytes",
    "A loaded model's bytes: charged to the budget, estimated before its first load, measured by that load "
    "(0 once unloaded)", ["worker", "model", "kind"], multiprocess_mode="livemax",
)
MEMORY_BYTES = Gauge(
    "model_zoo_memory_bytes", "Loaded models' bytes in total, estimated and measured (the measured total covers "
    "the measured models only)", ["worker", "kind"], multiprocess_mode="livemax",
)

_reported_models: dict[str, set[str]] = {}  # worker -> models whose bytes are on the gauges


def record_model_bytes(worker: str, snapshot: dict) -> None:
    """Set the per-model and total byte gauges from a cache snapshot; models no longer loaded go to 0."""
    held = {model["name"]: model for model in snapshot.get("models", [])}
    for name in _reported_models.get(worker, set()) - held.keys():
        for kind in ("charged", "estimated", "measured"):
            MODEL_BYTES.labels(worker, name, kind).set(0)
    for name, model in held.items():
        MODEL_BYTES.labels(worker, name, "charged").set(model.get("bytes") or 0)
        MODEL_BYTES.labels(worker, name, "estimated").set(model.get("estimated_bytes") or 0)
        if model.get("measured_bytes") is not None:
            MODEL_BYTES.labels(worker, name, "measured").set(model["measured_bytes"])
    _reported_models[worker] = set(held)
    MEMORY_BYTES.labels(worker, "estimated").set(snapshot.get("estimated_bytes") or 0)
    MEMORY_BYTES.labels(worker, "measured").set(snapshot.get("measured_bytes") or 0)


class CacheMetrics(CacheObserver):
    """The model cache's observer: turns its events into the counters above."""

    def on_load(self, name: str, seconds: float, nbytes: int) -> None:
        MODEL_LOADS.labels(name).inc()
        MODEL_LOAD_SECONDS.labels(name).observe(seconds)

    def on_evict(self, name: str, reason: str) -> None:
        MODEL_UNLOADS.labels(name).inc()
        MODEL_EVICTIONS.labels(name, reason).inc()

    def on_skip(self, name: str, reason: str) -> None:
        MODEL_SKIPS.labels(name).inc()

    def on_hit(self, name: str) -> None:
        CACHE_HITS.labels(name).inc()

    def on_miss(self, name: str) -> None:
        CACHE_MISSES.labels(name).inc()


def serve_metrics(settings: MetricsSettings) -> int | None:
    """Serve /metrics on METRICS_PORT from the worker's parent; returns the port, or None when unset or taken.

    A port already taken (another pool on this host) is logged as a warning and the worker runs on without it.
    """
    if settings.port is None:
        return None
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # prometheus_client's own setting, set by the launcher
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    try:
        start_http_server(settings.port, addr=settings.addr, registry=registry)
    except OSError as exc:
        log.warning("metrics port %s:%s is taken or cannot be bound (%s): this worker serves no /metrics; "
                    "another pool on this host? set METRICS_PORT_BASE to a free range (0: no metrics)",
                    settings.addr, settings.port, exc.strerror or exc)
        return None
    log.info("metrics on %s:%s/metrics", settings.addr, settings.port)
    return settings.port


def mark_child_dead(pid: int) -> None:
    """Drop a finished child's live gauges from the multiprocess files."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
