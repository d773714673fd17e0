#!/usr/bin/env python3
"""Benchmark the Celery pool against the direct in-process pipeline on the same models and events.

    python scripts/bench.py                     # tiny real models: direct, pool, batched pool, affinity on/off
    python scripts/bench.py --noop              # no-op models: what orchestration alone costs
    python scripts/bench.py --gpus 0 --device cuda --models-dir models   # on a GPU host, no patching
    python scripts/bench.py --events 200 --report var/bench/report.json

One run replays the same seeded trace (mostly persons, some with a face, rare suspicious ones with a frame
buffer, vehicles and animals, built from real photos) through:

  direct     tasks.pipeline.enrich_directly: the pool's own admission, planning, DeviceRuntime and assembly,
             in this process, one event after another (models loaded beforehand), no Celery, no Redis;
  pool       a local redis-server, the router worker and one device worker as `python -m workers start` runs
             it by default (a threads pool, an event's models side by side, micro-batches of --batch-size):
             events one at a time for latency, then CONCURRENCY in flight for throughput;
  unbatched  the same threads pool with batch size 1 (what batching adds);
  prefork    one device worker with one prefork child, one task at a time (the old default; --compare);
  affinity   two device workers, each with --affinity-share-mb, run twice on the same trace: router
             preferring the worker that holds the model, then not (AFFINITY_ROUTING=0); model loads compared.

It prints a table and writes a JSON report after every phase (a run cut short keeps what it measured). Each
phase is bounded by --phase-timeout; a phase that fails or times out is recorded with its error and the tail
of the pool's log, and the run goes on. Figures: events/s, end-to-end latency p50/p95/p99 (submit to the
enrichment.completed announcement), orchestration overhead per event (the pool's latency for an event, one
event at a time, minus the direct pipeline's latency for the same event: what Celery, Redis and the hops add),
bytes through Redis per event (INFO stats) for each way of sending a frame (inline through the pool's client, which
uploads it once; by image_key; inline from a stock Celery app), each also with 1080p frames to separate the bytes
per frame byte (the frame's copies) from the bytes per event (Celery's messages, results, task events), frame
bytes read by device workers per event against the event's frame bytes, model loads and cache hit rate.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.fixtures import sample_events  # noqa: E402
from tasks.results import COMPLETED_CHANNEL, result_key  # noqa: E402
from workers.registry import MODELS  # noqa: E402
from workers.state import WORKER_INDEX, WORKER_STATE_PREFIX  # noqa: E402

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "False"}

app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])


# -- the trace ------------------------------------------------------------------------------------------------

MIX = (("person", 0.55), ("person_face", 0.15), ("suspicious", 0.05), ("vehicle", 0.15), ("animal", 0.10))


def make_trace(count: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    """count events drawn from MIX with a seeded generator; event ids are prefix-<n>."""
    rng = random.Random(seed)
    kinds, weights = zip(*MIX)
    builders = {
        "person": lambda i: sample_events.person_event(i),
        "person_face": lambda i: sample_events.person_event(i, face=True),
        "suspicious": lambda i: sample_events.person_event(i, face=True, suspicious=80, frames=8),
        "vehicle": sample_events.vehicle_event,
        "animal": sample_events.animal_event,
    }
    return [builders[rng.choices(kinds, weights)[0]](f"{prefix}-{n}") for n in range(count)]


# Person boxes on the sample photo: up to four detections on one frame (scene models are planned for persons).
FRAME_BOXES = ([747, 41, 1141, 712], [120, 200, 560, 712], [560, 100, 760, 600], [40, 60, 300, 500])


def multi_detection_trace(count: int, per_frame: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    """About count events, per_frame person detections on each frame: frames whose bytes differ from each other
    (the sample photo, one pixel set from the seed), the detections of one frame next to each other in the trace."""
    import io

    from PIL import Image

    rng = random.Random(seed)
    photo = Image.open(io.BytesIO(base64.b64decode(sample_events.person_event("x")["image"]))).convert("RGB")
    trace = []
    for frame in range(max(1, count // per_frame)):
        image = photo.copy()
        image.putpixel((0, 0), (rng.randrange(256), rng.randrange(256), frame % 256))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=90)
        encoded = base64.b64encode(out.getvalue()).decode()
        for n in range(per_frame):
            event = sample_events.person_event(f"{prefix}-{frame}-{n}")
            trace.append(event | {"image": encoded, "bbox": FRAME_BOXES[n % len(FRAME_BOXES)]})
    return trace


def scene_runs(trace: list[dict[str, Any]], results: list[dict[str, Any]]) -> dict[str, Any]:
    """Scene-model runs per frame: a record that names no shared_from ran the model (frames: distinct bytes)."""
    frames = len({hashlib.sha256(base64.b64decode(e["image"])).hexdigest() for e in trace if e.get("image")})
    figures: dict[str, Any] = {"frames": frames, "events": len(trace)}
    for model in ("florence", "clip"):
        records = [r.get("models", {}).get(model) for r in results]
        ran = sum(1 for record in records if record and not record.get("shared_from"))
        shared = sum(1 for record in records if record and record.get("shared_from"))
        figures[model] = {"runs": ran, "shared": shared,
                          "runs_per_frame": round(ran / frames, 2) if frames else None}
    return figures


def warmup_trace(seed: int) -> list[dict[str, Any]]:
    """Events that load every model before anything is measured."""
    return make_trace(10, seed + 1, "warm") + [
        sample_events.person_event("warm-s", face=True, suspicious=80, frames=8),
        sample_events.vehicle_event("warm-v"), sample_events.animal_event("warm-a"),
    ]


def frame_bytes(event: dict[str, Any]) -> int:
    """Encoded bytes of the event's frame and frame buffer (what the models need)."""
    sources = [event] + list(event.get("frames", []))
    return sum(len(base64.b64decode(s["image"])) for s in sources if s.get("image"))


def by_key(event: dict[str, Any], client: Any) -> dict[str, Any]:
    """The event as a backend that stores frames in Redis itself sends it: image_key instead of pixels."""

    def upload(source: dict[str, Any], name: str) -> dict[str, Any]:
        key = f"upload:{event['event_id']}:{name}"
        client.set(key, base64.b64decode(source["image"]), ex=900)
        return {k: v for k, v in source.items() if k != "image"} | {"image_key": key}

    keyed = upload(event, "full")
    if event.get("frames"):
        keyed["frames"] = [upload(frame, str(i)) for i, frame in enumerate(event["frames"])]
    return keyed


LARGE_FRAME_WIDTH = 1920  # a 1080p camera's frame width


def enlarged(event: dict[str, Any]) -> dict[str, Any]:
    """The event with every inline frame re-encoded LARGE_FRAME_WIDTH pixels wide (JPEG quality 90), boxes as
    they were (still inside the larger frame)."""
    event = dict(event)
    event["image"] = _enlarged(event["image"])
    if event.get("frames"):
        event["frames"] = [dict(f, image=_enlarged(f["image"])) for f in event["frames"]]
    return event


_ENLARGED: dict[str, str] = {}


def _enlarged(image: str) -> str:
    if image not in _ENLARGED:
        import io

        from PIL import Image

        photo = Image.open(io.BytesIO(base64.b64decode(image))).convert("RGB")
        height = round(photo.height * LARGE_FRAME_WIDTH / photo.width)
        buffer = io.BytesIO()
        photo.resize((LARGE_FRAME_WIDTH, height), Image.Resampling.BICUBIC).save(buffer, format="JPEG", quality=90)
        _ENLARGED[image] = base64.b64encode(buffer.getvalue()).decode()
    return _ENLARGED[image]


# -- figures --------------------------------------------------------------------------------------------------

def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]

    return {"p50": round(at(0.50), 2), "p95": round(at(0.95), 2), "p99": round(at(0.99), 2),
            "mean": round(statistics.fmean(values), 2)}


def model_ms(result: dict[str, Any]) -> float:
    """Load + inference time on the busiest worker: the models' share of the event's latency."""
    per_worker: dict[str, float] = {}
    for record in result.get("models", {}).values():
        worker = record.get("worker") or "?"
        per_worker[worker] = per_worker.get(worker, 0.0) + record.get("load_ms", 0.0) + record.get("infer_ms", 0.0)
    return max(per_worker.values(), default=0.0)


def cache_figures(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Model runs, loads and hit rate over the ok records; skipped and failed records counted beside them."""
    every = [r for result in results for r in result.get("models", {}).values()]
    # a record answered whole from another event's run on its frame never asked the cache
    from workers.registry import REGISTRY

    every = [r for r in every if not (r.get("shared_from") and getattr(REGISTRY.get(r.get("model")), "frame_outputs",
                                                                       ()) == "all")]
    records = [r for r in every if r.get("status") == "ok"]
    loads = sum(1 for r in records if not r.get("cache_hit"))
    return {
        "model_runs": len(records), "loads": loads,
        "skipped": sum(1 for r in every if r.get("status") == "skipped"),
        "failed": sum(1 for r in every if r.get("status") in ("error", "timeout")),
        "loads_per_event": round(loads / len(results), 3) if results else 0.0,
        "hit_rate": round(1 - loads / len(records), 4) if records else 0.0,
        "statuses": {s: sum(1 for r in results if r.get("status") == s) for s in ("complete", "partial", "rejected")},
    }


def traffic_figures(traffic: dict[str, int], events: int, frames: int) -> dict[str, Any]:
    return {
        "in_bytes_per_event": round(traffic["in"] / events),
        "out_bytes_per_event": round(traffic["out"] / events),
        "in_per_frame_byte": round(traffic["in"] / frames, 3),
        "out_per_frame_byte": round(traffic["out"] / frames, 3),
        "worker_frame_reads_per_frame_byte": round(traffic["reads"] / frames, 3),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


# -- models for both sides ------------------------------------------------------------------------------------

def noop_environment(root: Path) -> dict[str, str]:
    """<NAME>_MODEL_FAMILY and <NAME>_MODEL_PATH for every model: the no-op family, a marker directory named for
    the model (the no-op answers the smallest result the contract accepts for it)."""
    from scripts.fixtures.noop import write_noop

    env = {}
    for entry in MODELS:
        write_noop(root / "noop" / entry.name)
        env[entry.family_env] = "scripts.fixtures.noop:NoopModel"
        env[entry.path_env] = str(root / "noop" / entry.name)
    return env


TINY_MODELS_DIR = REPO / "var" / "tiny-models"


def is_tiny_models_dir(models_dir: Path) -> bool:
    return models_dir.resolve() == TINY_MODELS_DIR.resolve()


def models_label(models_dir: Path) -> str:
    """What the report calls the models: "tiny" for the generated default, else where the weights were read."""
    return "tiny" if is_tiny_models_dir(models_dir) else f"{models_dir}'s"


def missing_weights(models_dir: Path) -> list[str]:
    """The models with no weights where the pool will look: MODELS_DIR/<name>, or <NAME>_MODEL_PATH when set."""
    from workers.settings import ZooSettings

    overrides = ZooSettings().model_paths
    return [entry.name for entry in MODELS if not entry.weights_path(models_dir, overrides).exists()]


def ensure_tiny_models(models_dir: Path) -> None:
    from scripts.fixtures.weights import write_generated

    for entry in MODELS:
        write_generated(entry, models_dir)


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ with env applied, restored afterwards (the direct path builds its Settings as a worker does)."""
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in previous.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


# -- direct ---------------------------------------------------------------------------------------------------

def run_direct(trace: list[dict[str, Any]], env: dict[str, str], device: str) -> dict[str, Any]:
    """The pool's pipeline in this process (tasks.pipeline.enrich_directly), one event after another."""
    from tasks.pipeline import enrich_directly
    from workers.frames import DecodedFrames
    from workers.runtime import DeviceRuntime
    from workers.settings import Settings

    with environment(env | {"DEVICE": device}):
        settings = Settings()
    runtime = DeviceRuntime(settings, DecodedFrames(None, settings.max_image_pixels, capacity=64), "direct")
    started = time.perf_counter()
    for entry in MODELS:
        runtime.cache.get(runtime.spec_for(entry))
    load_s = time.perf_counter() - started
    latencies, models = [], []
    started = time.perf_counter()
    for raw in trace:
        t0 = time.perf_counter()
        result = enrich_directly(raw, runtime, settings).model_dump(mode="json")
        latencies.append((time.perf_counter() - t0) * 1000)
        models.append(model_ms(result))
    elapsed = time.perf_counter() - started
    runtime.cache.clear()
    return {
        "device": runtime.device, "events": len(trace), "seconds": round(elapsed, 3),
        "events_per_s": round(len(trace) / elapsed, 2), "latency_ms": percentiles(latencies),
        "model_ms": percentiles(models), "latency_by_event_ms": [round(v, 3) for v in latencies],
        "load_all_models_s": round(load_s, 2),
    }


# -- the pool -------------------------------------------------------------------------------------------------

@dataclass
class Completions:
    """Listens on enrichment.completed and notes when each event finished (this machine's clock)."""

    client: Any
    finished: dict[str, float] = field(default_factory=dict)
    ready: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(COMPLETED_CHANNEL)
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        try:
            for message in self.pubsub.listen():
                self._note(message, time.perf_counter())
        except Exception:  # noqa: BLE001 - the server went away at the end of a run: nothing left to hear
            return

    def _note(self, message: dict[str, Any], now: float) -> None:
        try:
            announced = json.loads(message["data"])
            event_id = announced.get("submitted_event_id") or announced["event_id"]  # a rejection's own id differs
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        with self.ready:
            self.finished.setdefault(event_id, now)
            self.ready.notify_all()

    def close(self) -> None:
        self.pubsub.close()


PUBLISH_SETTLE = 1.5


@dataclass
class PoolRun:
    """One started pool (its own redis-server) and the measurements taken on it."""

    pool: Any
    client: Any
    completions: Completions
    deadline: float

    def submit_all(self, trace: list[dict[str, Any]], concurrency: int,
                   send: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, float]:
        """Send the trace keeping `concurrency` events in flight (through the pool's client unless `send` is
        given); event_id -> latency in ms."""
        send = send or self.pool.client.submit
        sent: dict[str, float] = {}
        pending = list(trace)
        in_flight: set[str] = set()
        while pending or in_flight:
            while pending and len(in_flight) < concurrency:
                event = pending.pop(0)
                sent[event["event_id"]] = time.perf_counter()
                send(event)
                in_flight.add(event["event_id"])
            in_flight -= self._wait_for_any(in_flight)
        return {e: (self.completions.finished[e] - t) * 1000 for e, t in sent.items()}

    def _wait_for_any(self, in_flight: set[str]) -> set[str]:
        with self.completions.ready:
            while True:
                done = {e for e in in_flight if e in self.completions.finished}
                if done:
                    return done
                if time.monotonic() > self.deadline:
                    raise TimeoutError(f"{len(in_flight)} events still in flight when the phase ran out of time")
                self.completions.ready.wait(0.5)

    def results(self, trace: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [json.loads(self.client.get(result_key(e["event_id"]))) for e in trace]

    def worker_states(self) -> list[dict[str, Any]]:
        """What each device worker last published, found through the router's own index (no keyspace scan)."""
        names = [n.decode() for n in self.client.smembers(WORKER_INDEX)]
        raws = self.client.mget([WORKER_STATE_PREFIX + n for n in names]) if names else []
        return [json.loads(raw) for raw in raws if raw]

    def measure_traffic(self, send: Callable[[], Any]) -> tuple[Any, dict[str, int]]:
        """send() between two readings of Redis's byte counters and of the frame bytes the workers read."""

        def reading() -> tuple[int, int, int]:
            stats = self.client.info("stats")
            reads = sum(state.get("frame_bytes_read", 0) for state in self.worker_states())
            return int(stats["total_net_input_bytes"]), int(stats["total_net_output_bytes"]), reads

        time.sleep(PUBLISH_SETTLE)  # workers republish their state (frame bytes read) on a 1 s heartbeat
        before = reading()
        outcome = send()
        time.sleep(PUBLISH_SETTLE)
        after = reading()
        return outcome, {"in": after[0] - before[0], "out": after[1] - before[1], "reads": after[2] - before[2]}

    def sequential(self, trace: list[dict[str, Any]]) -> dict[str, Any]:
        """One event at a time: latency, the models' share of it, the router's time, and the one-task floor."""
        latencies = self.submit_all(trace, 1)
        results = self.results(trace)
        lat = [latencies[e["event_id"]] for e in trace]
        models = [model_ms(r) for r in results]
        # The floor: one task round trip (a malformed event is answered by the router alone).
        floor = self.submit_all([{"event_id": f"floor-{n}", "detection_type": "person"} for n in range(10)], 1)
        return {
            "latency_ms": percentiles(lat), "model_ms": percentiles(models),
            "latency_by_event_ms": [round(v, 3) for v in lat],
            "router_ms": percentiles([r.get("timings", {}).get("route_ms", 0.0) for r in results]),
            "one_task_round_trip_ms": percentiles(list(floor.values())),
        }

    def concurrent(self, trace: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
        """CONCURRENCY events in flight: throughput, latency, Redis traffic, cache and batching figures."""

        def send() -> tuple[dict[str, float], float]:
            started = time.perf_counter()
            return self.submit_all(trace, concurrency), time.perf_counter() - started

        (latencies, elapsed), traffic = self.measure_traffic(send)
        results = self.results(trace)
        frames = sum(frame_bytes(e) for e in trace)
        count = len(trace)
        return {
            "concurrent": {"events": count, "seconds": round(elapsed, 3), "events_per_s": round(count / elapsed, 2),
                           "latency_ms": percentiles([latencies[e["event_id"]] for e in trace])},
            "redis": {"frame_bytes_per_event": round(frames / count)} | traffic_figures(traffic, count, frames) | {
                "models_per_event": round(sum(len(r.get("models", {})) for r in results) / count, 2)},
            "cache": cache_figures(results),
            "model_tasks_per_worker": dict(sorted(Counter(
                (record.get("worker") or "?").split("@")[0] for r in results
                for record in r.get("models", {}).values()).items())),
            "batching": [{k: s.get(k) for k in ("worker", "batches", "batched_requests", "largest_batch",
                                                "batch_limit")} for s in self.worker_states()],
            "scene_runs": scene_runs(trace, results),
        }

    def keyed(self, trace: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
        """The same events sent by image_key (the backend's own SET of each frame counts as its crossing)."""
        frames = sum(frame_bytes(e) for e in trace)
        _, traffic = self.measure_traffic(lambda: self.submit_all([by_key(e, self.client) for e in trace], concurrency))
        return traffic_figures(traffic, len(trace), frames)

    def plain_celery(self, trace: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
        """The same events inline, sent as a stock Celery app sends them (send_task, kombu's base64 body)."""
        from celery import Celery

        stock = Celery("stock_backend", broker=self.pool.redis_url, backend=self.pool.redis_url)
        send = lambda event: stock.send_task("enrich_detection", args=[event], queue="router")  # noqa: E731
        frames = sum(frame_bytes(e) for e in trace)
        try:
            _, traffic = self.measure_traffic(lambda: self.submit_all(trace, concurrency, send))
        finally:
            stock.close()
        return traffic_figures(traffic, len(trace), frames)

    def bytes_by_frame_size(self, trace: list[dict[str, Any]], concurrency: int, small: dict[str, Any]) -> dict:
        """Each way of sending again with the frames at LARGE_FRAME_WIDTH: the bytes Redis takes per extra frame
        byte (the frame's copies) and per event whatever the frame (Celery's messages, results, events)."""
        large = [enlarged(dict(e, event_id=e["event_id"] + "-L")) for e in trace]
        measured = {
            "client_inline": self.measure_path(large, concurrency, None),
            "by_image_key": self.keyed([dict(e, event_id=e["event_id"] + "k") for e in large], concurrency),
            "plain_celery_inline": self.plain_celery([dict(e, event_id=e["event_id"] + "p") for e in large],
                                                     concurrency),
        }
        figures = {}
        for path, at_large in measured.items():
            frames_small, frames_large = small["frame_bytes"], sum(frame_bytes(e) for e in large) / len(large)
            in_small = small[path]["in_bytes_per_event"]
            slope = (at_large["in_bytes_per_event"] - in_small) / (frames_large - frames_small)
            figures[path] = {
                "in_per_frame_byte": small[path]["in_per_frame_byte"],
                f"in_per_frame_byte_{LARGE_FRAME_WIDTH}px": at_large["in_per_frame_byte"],
                "in_per_extra_frame_byte": round(slope, 3),
                "in_bytes_per_event_besides_frames": round(in_small - slope * frames_small),
            }
        return {"frame_bytes_per_event": round(small["frame_bytes"]),
                f"frame_bytes_per_event_{LARGE_FRAME_WIDTH}px": round(frames_large), "paths": figures}

    def measure_path(self, trace: list[dict[str, Any]], concurrency: int, send: Any) -> dict[str, Any]:
        frames = sum(frame_bytes(e) for e in trace)
        _, traffic = self.measure_traffic(lambda: self.submit_all(trace, concurrency, send))
        return traffic_figures(traffic, len(trace), frames)


@dataclass(frozen=True)
class PoolPlan:
    """How one pool phase is started and what it measures."""

    env: dict[str, str]
    gpus: str = "none"
    cpu_workers: int = 1
    pool: str = "threads"
    batch_size: int | None = None  # None: the launcher's default for the pool
    threads: int | None = None
    concurrency: int = 4
    sequential: bool = True
    keyed: bool = False
    warm: bool = True


def device_slots(gpus: str, cpu_workers: int) -> int:
    return cpu_workers if gpus == "none" else len([g for g in gpus.split(",") if g.strip()])


@contextlib.contextmanager
def started_pool(plan: PoolPlan, models_dir: Path, log_dir: Path, timeout: float) -> Iterator[PoolRun]:
    """A redis-server and `python -m workers start` for one phase; both stopped however the phase ends."""
    from tasks.local_pool import LocalPool, RedisServer

    server = RedisServer().start()
    pool = LocalPool(server.url, models_dir, log_dir, env=plan.env, gpus=plan.gpus, cpu_workers=plan.cpu_workers,
                     pool=plan.pool, batch_size=plan.batch_size, threads=plan.threads, client_uploads=True)
    client = server.client()
    completions = None
    try:
        pool.start(expected_workers=1 + device_slots(plan.gpus, plan.cpu_workers))
        completions = Completions(client)
        yield PoolRun(pool, client, completions, time.monotonic() + timeout)
    finally:
        if completions is not None:
            completions.close()
        pool.stop()
        client.close()
        server.cleanup()


def run_pool(plan: PoolPlan, trace: list[dict[str, Any]], warmup: list[dict[str, Any]], models_dir: Path,
             log_dir: Path, timeout: float) -> dict[str, Any]:
    """Warm a fresh pool, then measure the trace one at a time and/or concurrently."""
    report: dict[str, Any] = {"device_workers": device_slots(plan.gpus, plan.cpu_workers), "gpus": plan.gpus,
                              "pool": plan.pool, "batch_size": plan.batch_size, "threads": plan.threads,
                              "concurrency": plan.concurrency}
    with started_pool(plan, models_dir, log_dir, timeout) as run:
        if plan.warm:
            run.submit_all(warmup, 1)  # models load here, not in the measured trace
        if plan.sequential:
            report["sequential"] = run.sequential(trace)
            trace = [dict(e, event_id=e["event_id"] + "-c") for e in trace]
        report |= run.concurrent(trace, plan.concurrency)
        if plan.keyed:
            report["redis_by_key"] = run.keyed([dict(e, event_id=e["event_id"] + "-k") for e in trace],
                                               plan.concurrency)
            report["redis_plain_celery"] = run.plain_celery([dict(e, event_id=e["event_id"] + "-p") for e in trace],
                                                            plan.concurrency)
            small = {"frame_bytes": report["redis"]["frame_bytes_per_event"], "client_inline": report["redis"],
                     "by_image_key": report["redis_by_key"], "plain_celery_inline": report["redis_plain_celery"]}
            report["redis_bytes"] = run.bytes_by_frame_size(trace, plan.concurrency, small)
    return report


# -- the report -----------------------------------------------------------------------------------------------

class Report:
    """The JSON report, written after every phase; a failed phase keeps its error and the pool's log tail."""

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        self.data = dict(header)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def phase(self, name: str, measure: Callable[[], dict[str, Any]], log_dir: Path | None = None) -> None:
        typer.echo(f"{name} ...")
        started = time.perf_counter()
        try:
            self.data[name] = measure()
        except Exception as exc:  # noqa: BLE001 - record it and go on with the other phases
            self.data[name] = {"error": f"{type(exc).__name__}: {exc}", "log_tail": log_tail(log_dir)}
            typer.echo(f"{name} failed: {type(exc).__name__}: {exc}", err=True)
        self.data[name]["phase_seconds"] = round(time.perf_counter() - started, 1)
        self.write()

    def write(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=2) + "\n")

    def failed(self) -> list[str]:
        return [name for name, value in self.data.items() if isinstance(value, dict) and "error" in value]


def log_tail(log_dir: Path | None, lines: int = 60) -> str:
    log = log_dir / "pool.log" if log_dir else None
    if log is None or not log.exists():
        return "(no pool log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def ok(report: dict[str, Any], name: str) -> dict[str, Any] | None:
    phase = report.get(name)
    return phase if isinstance(phase, dict) and "error" not in phase else None


def overhead(direct: dict[str, Any], run: dict[str, Any]) -> dict[str, float]:
    """Per event, the pool's latency (one event at a time) less the direct pipeline's for the same event."""
    pool_ms = (run or {}).get("sequential", {}).get("latency_by_event_ms", [])
    direct_ms = (direct or {}).get("latency_by_event_ms", [])
    return percentiles([p - d for p, d in zip(pool_ms, direct_ms)])


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """The headline ratios and figures, from the phases that succeeded."""
    direct, pool = ok(report, "direct") or {}, ok(report, "pool") or {}
    rate = lambda run: (run or {}).get("concurrent", {}).get("events_per_s")  # noqa: E731
    summary = {
        "pool_over_direct_throughput": ratio(rate(pool), direct.get("events_per_s")),
        "overhead_ms_p50": overhead(direct, pool).get("p50"),
        "one_task_round_trip_ms_p50": pool.get("sequential", {}).get("one_task_round_trip_ms", {}).get("p50"),
        "frame_reads_per_frame_byte": pool.get("redis", {}).get("worker_frame_reads_per_frame_byte"),
        "redis_in_per_frame_byte": pool.get("redis", {}).get("in_per_frame_byte"),
        "redis_in_per_frame_byte_by_key": pool.get("redis_by_key", {}).get("in_per_frame_byte"),
        "redis_in_per_frame_byte_plain_celery": pool.get("redis_plain_celery", {}).get("in_per_frame_byte"),
        "redis_bytes": pool.get("redis_bytes", {}).get("paths"),
    }
    if ok(report, "pool_no_events"):
        summary["overhead_ms_p50_without_task_events"] = overhead(direct, report["pool_no_events"]).get("p50")
    if ok(report, "unbatched"):
        summary["pool_over_unbatched_throughput"] = ratio(rate(pool), rate(report["unbatched"]))
    if ok(report, "prefork"):
        summary["pool_over_prefork_throughput"] = ratio(rate(pool), rate(report["prefork"]))
        summary["prefork_overhead_ms_p50"] = overhead(direct, report["prefork"]).get("p50")
    for label in ("on", "off"):
        run = ok(report, f"affinity_{label}")
        if run:
            summary[f"loads_per_event_affinity_{label}"] = run["cache"]["loads_per_event"]
            summary[f"skipped_affinity_{label}"] = run["cache"]["skipped"]
    if ok(report, "pool_unshared"):
        summary["pool_over_unshared_throughput"] = ratio(rate(pool), rate(report["pool_unshared"]))
        summary["scene_runs_per_frame"] = {name: {model: report[name]["scene_runs"][model]["runs_per_frame"]
                                                  for model in ("florence", "clip")}
                                           for name in ("pool", "pool_unshared") if ok(report, name)}
    summary["failed_phases"] = [name for name in report if isinstance(report[name], dict) and "error" in report[name]]
    return summary


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"bench: {report['events']} events, {report['models']} models, seed {report['seed']}")
    for column in ("run", "events/s", "p50 ms", "p95 ms", "p99 ms", "overhead p50 ms", "loads/event", "hit rate",
                   "skipped", "partial"):
        table.add_column(column, justify="right" if column != "run" else "left")
    direct = ok(report, "direct")
    if direct:
        table.add_row("direct", str(direct["events_per_s"]), *[str(direct["latency_ms"][q]) for q in ("p50", "p95", "p99")],
                      "-", "-", "-", "-", "-")
    scaled = sorted((k for k in report if k.startswith("workers_")), key=lambda k: int(k.split("_")[1]))
    for name in ("pool", "pool_unshared", "pool_no_events", "unbatched", "prefork", "affinity_on", "affinity_off",
                 *scaled):
        run = ok(report, name)
        if run is None:
            continue
        seq = run.get("sequential", {})
        lat = seq.get("latency_ms") or run["concurrent"]["latency_ms"]
        table.add_row(f"{name.replace('_', ' ')} ({'1 at a time' if seq else 'concurrent'} latency)",
                      str(run["concurrent"]["events_per_s"]), *[str(lat[q]) for q in ("p50", "p95", "p99")],
                      str(overhead(direct or {}, run).get("p50", "-")), str(run["cache"]["loads_per_event"]),
                      str(run["cache"]["hit_rate"]), str(run["cache"]["skipped"]), str(run["cache"]["statuses"]["partial"]))
    Console(width=160).print(table)
    for name in ("pool", "pool_unshared"):
        if report.get("multi_detection") and ok(report, name):
            runs = report[name]["scene_runs"]
            typer.echo(f"{name}: {report[name]['concurrent']['events_per_s']} events/s; {runs['frames']} frames of "
                       f"{report['multi_detection']} detections: florence {runs['florence']['runs_per_frame']} runs "
                       f"per frame, clip {runs['clip']['runs_per_frame']}")
    for name in scaled:
        if ok(report, name):
            typer.echo(f"{name}: {report[name]['concurrent']['events_per_s']} events/s, model tasks per worker "
                       f"{report[name]['model_tasks_per_worker']}")
    pool = ok(report, "pool") or {}
    Console().print_json(data={"redis (frames inline)": pool.get("redis"),
                               "redis (frames by image_key)": pool.get("redis_by_key"),
                               "redis (frames inline, a stock Celery sender)": pool.get("redis_plain_celery"),
                               "redis bytes by frame size": pool.get("redis_bytes"), "summary": report["summary"]})


# -- the figure -----------------------------------------------------------------------------------------------

LATENCY_RUNS = ("direct", "pool", "pool_no_events", "prefork")  # the runs that measure events one at a time


def latency_runs(report: dict[str, Any]) -> dict[str, list[float]]:
    """Each successful run's per-event latencies, one event at a time, sorted (the figure's curves)."""
    runs = {}
    for name in LATENCY_RUNS:
        run = ok(report, name) or {}
        latencies = run.get("latency_by_event_ms") or run.get("sequential", {}).get("latency_by_event_ms")
        if latencies:
            runs[name] = sorted(latencies)
    return runs


def write_figure(report: dict[str, Any], path: Path) -> Path | None:
    """A PNG of the latency distribution of each run that measured events one at a time: the share of events done
    within each latency (one curve per run, p50 and p95 marked). None when no run has per-event latencies."""
    runs = latency_runs(report)
    if not runs:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(8, 4.5), constrained_layout=True)
    for name, latencies in runs.items():
        shares = [(index + 1) / len(latencies) for index in range(len(latencies))]
        (line,) = axes.step(latencies, shares, where="post", label=f"{name.replace('_', ' ')} ({len(latencies)} events)")
        for q, marker in ((0.5, "o"), (0.95, "^")):
            at = latencies[min(len(latencies) - 1, round(q * (len(latencies) - 1)))]
            axes.plot([at], [q], marker=marker, color=line.get_color())
    axes.set_xscale("log")
    axes.set(xlabel="latency of one event, one at a time (ms, log scale)", ylabel="share of events done within it",
             ylim=(0, 1.02), title=f"bench: {report['events']} events, {report['models']} models, seed {report['seed']} "
                                   f"(o p50, ^ p95)")
    axes.grid(alpha=0.3, which="both")
    axes.legend(loc="lower right")
    figure.savefig(path, dpi=80)
    pyplot.close(figure)
    return path


# -- the command ----------------------------------------------------------------------------------------------

def pool_phases(noop: bool, env: dict[str, str], gpus: str, concurrency: int, batch_size: int, compare: bool,
                affinity: bool, affinity_share_mb: int) -> dict[str, PoolPlan]:
    """The pool phases of one run, by name, in order."""
    phases = {"pool": PoolPlan(env, gpus=gpus, batch_size=batch_size, concurrency=concurrency, keyed=True)}
    if noop:
        phases["pool_no_events"] = PoolPlan(env | {"TASK_EVENTS": "0"}, gpus=gpus, batch_size=batch_size,
                                            concurrency=concurrency)
    if compare:
        if batch_size > 1:
            phases["unbatched"] = PoolPlan(env, gpus=gpus, batch_size=1, concurrency=concurrency, sequential=False)
        phases["prefork"] = PoolPlan(env, gpus=gpus, pool="prefork", concurrency=concurrency)
    two_workers = gpus == "none" or device_slots(gpus, 1) >= 2
    if affinity and two_workers:
        shares = env | {"MEMORY_SHARE_MB": str(affinity_share_mb)}
        for label, flag in (("on", "1"), ("off", "0")):
            phases[f"affinity_{label}"] = PoolPlan(shares | {"AFFINITY_ROUTING": flag}, gpus=gpus, cpu_workers=2,
                                                   batch_size=batch_size, concurrency=concurrency, sequential=False,
                                                   warm=False)
    return phases


def scaling_phases(env: dict[str, str], workers: int, batch_size: int, concurrency: int) -> dict[str, PoolPlan]:
    """`workers_1` .. `workers_N`: the same trace through 1 .. N device workers (cpu.0 .. cpu.N-1 standing in for
    hosts), to see the work spread (model tasks per worker) and what it gains here."""
    return {f"workers_{n}": PoolPlan(env, cpu_workers=n, batch_size=batch_size, concurrency=concurrency,
                                     sequential=False) for n in range(1, workers + 1)}


@app.command()
def main(
    events: int = typer.Option(40, min=1, help="Events in the measured trace"),
    noop: bool = typer.Option(False, help="No-op models: measure orchestration alone"),
    seed: int = typer.Option(7, help="Trace seed"),
    concurrency: int = typer.Option(8, min=1, help="Events in flight in the throughput phase"),
    batch_size: int = typer.Option(4, min=1, help="The pool's micro-batch bound (the launcher's default is 4)"),
    compare: bool = typer.Option(True, help="Also run the pool without batching and with the prefork pool"),
    affinity: bool = typer.Option(True, help="Run the two-worker affinity comparison (needs two device workers)"),
    affinity_share_mb: int = typer.Option(4096, help="Memory share of each worker in the affinity runs"),
    scaling: int = typer.Option(0, min=0, help="Also run the trace through 1 .. N device workers (workers_N phases; "
                                               "CPU workers standing in for hosts)"),
    gpus: str = typer.Option("none", help="The pool's GPUs, as `python -m workers start --gpus` takes them"),
    device: str = typer.Option("cpu", help="The direct pipeline's device (cpu, cuda, cuda:1)"),
    multi_detection: int = typer.Option(0, min=0, max=len(FRAME_BOXES), help="Measure scene models once per frame: "
                                        "the trace becomes frames of this many person detections each, measured "
                                        "concurrently with sharing (pool) and without (pool_unshared)"),
    phase_timeout: float = typer.Option(600.0, min=1, help="Seconds one phase may take before it is abandoned"),
    models_dir: Path = typer.Option(TINY_MODELS_DIR, help="Model weights: tiny ones are generated in the default "
                                    "directory; any other must hold every model's weights"),
    report_path: Path = typer.Option(REPO / "var" / "bench" / "report.json", "--report",
                                     help="JSON report (and the latency figure beside it, .png)"),
) -> None:
    """Replay one trace through the direct pipeline and the pool; print the figures, write the JSON report."""
    os.environ.update(OFFLINE)
    work = Path(tempfile.mkdtemp(prefix="mz-bench-"))
    env = {"MEMORY_SHARE_MB": "16384", "METRICS_PORT_BASE": "0", "MODELS_DIR": str(models_dir)}
    if noop:
        env |= noop_environment(work)
    elif is_tiny_models_dir(models_dir):
        typer.echo(f"models in {models_dir} (tiny ones generated where missing) ...")
        ensure_tiny_models(models_dir)
    elif missing := missing_weights(models_dir):  # never mix random weights into someone's models
        raise typer.BadParameter(
            f"no weights under {models_dir} for {', '.join(missing)}: download them (scripts/download_models.py) "
            f"or generate them (scripts/make_tiny_models.py [--full-size] --models-dir {models_dir})",
            param_hint="--models-dir")
    else:
        typer.echo(f"models in {models_dir} ...")
    trace, warmup = make_trace(events, seed, "bench"), warmup_trace(seed)
    if multi_detection:
        trace = multi_detection_trace(events, multi_detection, seed, "bench")
    report = Report(report_path, {
        "events": len(trace), "multi_detection": multi_detection, "seed": seed,
        "models": "noop" if noop else models_label(models_dir),
        "models_dir": None if noop else str(models_dir), "machine": platform.machine(),
        "cpus": os.cpu_count(), "python": platform.python_version(), "gpus": gpus, "direct_device": device,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    report.phase("direct", lambda: run_direct(trace, env, device))
    phases = pool_phases(noop, env, gpus, concurrency, batch_size, compare, affinity, affinity_share_mb)
    if multi_detection:  # one concurrent pass each (a sequential pass first would leave the answers shared)
        phases = {"pool": PoolPlan(env, gpus=gpus, batch_size=batch_size, concurrency=concurrency, sequential=False),
                  "pool_unshared": PoolPlan(env | {"SCENE_SHARE_TTL_SECONDS": "0"}, gpus=gpus, batch_size=batch_size,
                                            concurrency=concurrency, sequential=False)}
    phases |= scaling_phases(env, scaling, batch_size, concurrency) if gpus == "none" else {}
    for name, plan in phases.items():
        log_dir = work / name
        report.phase(name, lambda plan=plan, log_dir=log_dir: run_pool(plan, trace, warmup, models_dir, log_dir,
                                                                      phase_timeout), log_dir)
    report.data["summary"] = summarise(report.data)
    report.write()
    print_report(report.data)
    figure = write_figure(report.data, report_path.with_suffix(".png"))
    typer.echo(f"report: {report_path}" + (f", figure: {figure}" if figure else ""))
    if report.failed():
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
