"""Prometheus metrics of a device worker (models, cache, memory, batches) and of the queues, and the registry a
worker serves on /metrics (workers.health serves it).

prometheus_client's multiprocess mode: the launcher gives every worker its own PROMETHEUS_MULTIPROC_DIR and
METRICS_PORT; children write samples to files there and the parent serves them all on /metrics.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from model_cache import EVICT_REASONS, CacheObserver

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
# One metric per measure (a `kind` label mixing three measures could not be summed or compared without a filter).
MODEL_CHARGED_BYTES = Gauge(
    "model_zoo_model_charged_bytes", "What a loaded model is charged against the worker's share: its estimate until "
    "its first load measures it, then the measurement (0 once unloaded)", ["worker", "model"], multiprocess_mode="livemax",
)
MODEL_ESTIMATED_BYTES = Gauge(
    "model_zoo_model_estimated_bytes", "A loaded model's estimate before its first load (weights on disk, else the "
    "registry's figure; 0 once unloaded)", ["worker", "model"], multiprocess_mode="livemax",
)
MODEL_MEASURED_BYTES = Gauge(
    "model_zoo_model_measured_bytes", "A loaded model's footprint measured by its load (absent until measured, 0 once "
    "unloaded)", ["worker", "model"], multiprocess_mode="livemax",
)
MEMORY_ESTIMATED_BYTES = Gauge(
    "model_zoo_memory_estimated_bytes", "The loaded models' estimates in total", ["worker"], multiprocess_mode="livemax",
)
MEMORY_MEASURED_BYTES = Gauge(
    "model_zoo_memory_measured_bytes", "The loaded models' measured footprints in total (the measured models only)",
    ["worker"], multiprocess_mode="livemax",
)
BATCH_SIZE = Histogram(
    "model_zoo_batch_size", "Requests served by one micro-batched model call", ["model"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
)
QUEUE_DEPTH = "model_zoo_queue_depth"  # read from Redis at each scrape by QueueDepthCollector (the router serves it)

RECORD_STATUSES = ("ok", "error", "skipped", "timeout")

_reported_models: dict[str, set[str]] = {}  # worker -> models whose bytes are on the gauges


def record_model_bytes(worker: str, snapshot: dict) -> None:
    """Set the per-model and total byte gauges from a cache snapshot; models no longer loaded go to 0."""
    held = {model["name"]: model for model in snapshot.get("models", [])}
    for name in _reported_models.get(worker, set()) - held.keys():
        for gauge in (MODEL_CHARGED_BYTES, MODEL_ESTIMATED_BYTES, MODEL_MEASURED_BYTES):
            gauge.labels(worker, name).set(0)
    for name, model in held.items():
        MODEL_CHARGED_BYTES.labels(worker, name).set(model.get("bytes") or 0)
        MODEL_ESTIMATED_BYTES.labels(worker, name).set(model.get("estimated_bytes") or 0)
        if model.get("measured_bytes") is not None:
            MODEL_MEASURED_BYTES.labels(worker, name).set(model["measured_bytes"])
    _reported_models[worker] = set(held)
    MEMORY_ESTIMATED_BYTES.labels(worker).set(snapshot.get("estimated_bytes") or 0)
    MEMORY_MEASURED_BYTES.labels(worker).set(snapshot.get("measured_bytes") or 0)


def start_model_series(models: Iterable[str]) -> None:
    """Create every model's counters at zero, so a dashboard's rate() and an alert see a series before its first
    increment (a labelled counter is otherwise absent until then)."""
    for model in models:
        for counter in (MODEL_LOADS, MODEL_UNLOADS, MODEL_SKIPS, CACHE_HITS, CACHE_MISSES):
            counter.labels(model)
        for status in RECORD_STATUSES:
            MODEL_RECORDS.labels(model, status)
        for reason in EVICT_REASONS:
            MODEL_EVICTIONS.labels(model, reason)


class QueueDepthCollector:
    """model_zoo_queue_depth{queue}: messages waiting in each queue, read from Redis when Prometheus scrapes.

    Kombu keeps a queue's messages of priority 3, 6 and 9 in lists of their own beside the queue's; they are
    counted with it, as kombu's own size() does. `queues()` names the queues (the pool's and every live device
    queue); a Redis error yields no sample rather than a wrong one (the worker's /readyz says the broker is down).
    """

    def __init__(self, client: Callable[[], redis.Redis], queues: Callable[[], Iterable[str]]):
        self.client = client
        self.queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from kombu.transport.redis import PRIORITY_STEPS, Channel

        family = GaugeMetricFamily(QUEUE_DEPTH, "Messages waiting in a queue (all priorities)", labels=["queue"])
        try:
            names = sorted(set(self.queues()))
            with self.client().pipeline(transaction=False) as pipe:
                for name in names:
                    for step in PRIORITY_STEPS:
                        pipe.llen(f"{name}{Channel.sep}{step}" if step else name)
                lengths = pipe.execute()
        except redis.RedisError as exc:
            log.debug("queue depth unavailable: %s", exc)
            return
        width = len(PRIORITY_STEPS)
        for index, name in enumerate(names):
            family.add_metric([name], sum(lengths[index * width:(index + 1) * width]))
        yield family

    def describe(self) -> list:
        return []  # collected on demand: registering it must not touch Redis


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


def metrics_registry() -> CollectorRegistry:
    """What a worker's /metrics serves: every process's samples in multiprocess mode (PROMETHEUS_MULTIPROC_DIR,
    set by the launcher), else this process's own."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # prometheus_client's own setting
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY


def mark_child_dead(pid: int) -> None:
    """Drop a finished child's live gauges from the multiprocess files."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
