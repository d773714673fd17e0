#!/usr/bin/env python3
"""Benchmark the Celery pool against the direct in-process pipeline on the same models and events.

    python scripts/bench.py                     # tiny real models: direct, pool, batched pool, affinity on/off
    python scripts/bench.py --noop              # no-op models: what orchestration alone costs
    python scripts/bench.py --events 200 --report var/bench/report.json

One run replays the same seeded trace (mostly persons, some with a face, rare suspicious ones with a frame
buffer, vehicles and animals, built from real photos) through:

  direct     the model wrappers called in this process, one event after another (models loaded beforehand);
  pool       a local redis-server, the router worker and one device worker (prefork, one child):
             events one at a time for latency, then CONCURRENCY in flight for throughput;
  threads    one device worker running a threads pool (8 x --batch-size threads) without batching;
  batched    the same threads with micro-batching (--batch-size: concurrent requests per model in one call);
  affinity   two device workers, each with --affinity-share-mb, run twice on the same trace: router
             preferring the worker that holds the model, then not (AFFINITY_ROUTING=0); model loads compared.

It prints a table and writes a JSON report. Figures: events/s, end-to-end latency p50/p95/p99 (submit to the
enrichment.completed announcement), orchestration overhead per event (pool latency minus the time spent
loading and running models), bytes through Redis per event (INFO stats), frame bytes read by device workers
per event against the event's frame bytes, model loads and cache hit rate.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import typer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks import sample_events  # noqa: E402
from tasks.placement import WORKER_INDEX, WORKER_STATE_PREFIX  # noqa: E402
from tasks.results import COMPLETED_CHANNEL, result_key  # noqa: E402
from workers.registry import MODELS  # noqa: E402

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


def frame_bytes(event: dict[str, Any]) -> int:
    """Encoded bytes of the event's frame and frame buffer (what the models need)."""
    import base64

    sources = [event] + list(event.get("frames", []))
    return sum(len(base64.b64decode(s["image"])) for s in sources if s.get("image"))


def by_key(event: dict[str, Any], client: Any) -> dict[str, Any]:
    """The event as a backend that stores frames in Redis itself sends it: image_key instead of pixels."""
    import base64

    def upload(source: dict[str, Any], name: str) -> dict[str, Any]:
        key = f"upload:{event['event_id']}:{name}"
        client.set(key, base64.b64decode(source["image"]), ex=900)
        return {k: v for k, v in source.items() if k != "image"} | {"image_key": key}

    keyed = upload(event, "full")
    if event.get("frames"):
        keyed["frames"] = [upload(frame, str(i)) for i, frame in enumerate(event["frames"])]
    return keyed


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


# -- models for both sides ------------------------------------------------------------------------------------

def noop_environment(root: Path) -> dict[str, str]:
    """<NAME>_MODEL_FAMILY and <NAME>_MODEL_PATH for every model: the no-op family, one marker directory."""
    from workers.models.noop import write_tiny

    write_tiny(root / "noop")
    env = {}
    for entry in MODELS:
        env[entry.family_env] = "noop:NoopModel"
        env[entry.path_env] = str(root / "noop")
    return env


def tiny_models(models_dir: Path) -> None:
    from workers.model_files import write_generated

    for entry in MODELS:
        write_generated(entry, models_dir)


# -- direct ---------------------------------------------------------------------------------------------------

def run_direct(trace: list[dict[str, Any]], models_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """The same wrappers, in this process, one event after another: validate, decode, plan, infer, prompt."""
    from PIL import Image

    from prompt_formatting.attributes import count_context_attributes
    from prompt_formatting.template import build_risk_prompt
    from tasks.assemble import merge_records, unavailable_models
    from tasks.images import decode_base64, decode_image
    from tasks.schemas import DetectionEvent, ModelRecord
    from tasks.settings import Settings
    from workers.models.base import ModelInput
    from workers.registry import plan_models, weights_path

    settings = Settings()
    overrides = dict(os.environ) | env
    wrappers = {}
    started = time.perf_counter()
    for entry in MODELS:
        wrapper = entry.load_class(overrides)(str(weights_path(entry, models_dir, overrides)), "cpu")
        wrapper.load()
        wrappers[entry.name] = wrapper
    load_s = time.perf_counter() - started

    def decode(text: str) -> Image.Image:
        return decode_image("image", decode_base64("image", text, settings.max_image_bytes), settings.max_image_pixels)

    latencies, models = [], []
    started = time.perf_counter()
    for raw in trace:
        t0 = time.perf_counter()
        event = DetectionEvent.model_validate(raw)
        frame = decode(raw["image"])
        inputs = ModelInput(frame=frame, bbox=event.bbox, detection_type=event.detection_type,
                            face_bbox=event.face_bbox, frames=[decode(f["image"]) for f in raw.get("frames", [])])
        scene = settings.scene_models if event.detection_type in settings.scene_detection_types else []
        records, spent = [], 0.0
        for name in plan_models(event, scene_models=scene):
            m0 = time.perf_counter()
            try:
                records.append(ModelRecord(model=name, status="ok", data=wrappers[name].infer(inputs)).model_dump())
            except Exception as exc:  # the same rule as the pool: a failing model is a record, not a crash
                records.append(ModelRecord(model=name, status="skipped", error=str(exc)).model_dump())
            spent += (time.perf_counter() - m0) * 1000
        enrichment, by_model = merge_records(records, [r["model"] for r in records])
        unavailable = unavailable_models(by_model)
        summary = event.summary()
        build_risk_prompt(summary, enrichment, unavailable)
        count_context_attributes(enrichment)
        latencies.append((time.perf_counter() - t0) * 1000)
        models.append(spent)
    elapsed = time.perf_counter() - started
    for wrapper in wrappers.values():
        wrapper.unload()
    return {
        "events": len(trace), "seconds": round(elapsed, 3), "events_per_s": round(len(trace) / elapsed, 2),
        "latency_ms": percentiles(latencies), "model_ms": percentiles(models),
        "overhead_ms": percentiles([lat - m for lat, m in zip(latencies, models)]), "load_all_models_s": round(load_s, 2),
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
            self._read()
        except Exception:  # noqa: BLE001 - the server went away at the end of a run: nothing left to hear
            return

    def _read(self) -> None:
        for message in self.pubsub.listen():
            now = time.perf_counter()
            try:
                event_id = json.loads(message["data"])["event_id"]
            except (ValueError, KeyError, TypeError):
                continue
            with self.ready:
                self.finished.setdefault(event_id, now)
                self.ready.notify_all()

    def wait(self, event_ids: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.ready:
            while not event_ids <= self.finished.keys():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    missing = sorted(event_ids - self.finished.keys())
                    raise TimeoutError(f"{len(missing)} events not finished after {timeout}s: {missing[:5]}")
                self.ready.wait(remaining)

    def close(self) -> None:
        self.pubsub.close()


PUBLISH_SETTLE = 1.5


def redis_bytes(client: Any) -> tuple[int, int]:
    stats = client.info("stats")
    return int(stats["total_net_input_bytes"]), int(stats["total_net_output_bytes"])


def worker_states(client: Any) -> list[dict[str, Any]]:
    """What each device worker last published, found through the router's own index (no keyspace scan)."""
    names = [n.decode() for n in client.smembers(WORKER_INDEX)]
    return [json.loads(raw) for raw in client.mget([WORKER_STATE_PREFIX + n for n in names]) if raw] if names else []


def frame_reads(client: Any) -> int:
    """Frame bytes the device workers have read from Redis so far (published in their state)."""
    return sum(state.get("frame_bytes_read", 0) for state in worker_states(client))


def measure_traffic(client: Any, send: Callable[[], Any]) -> tuple[Any, dict[str, int]]:
    """send() between two readings of Redis's byte counters and of the frame bytes the workers read."""
    time.sleep(PUBLISH_SETTLE)  # workers republish their state (frame bytes read) on a 1 s heartbeat
    bytes_in, bytes_out = redis_bytes(client)
    reads = frame_reads(client)
    outcome = send()
    bytes_in2, bytes_out2 = redis_bytes(client)
    time.sleep(PUBLISH_SETTLE)
    return outcome, {"in": bytes_in2 - bytes_in, "out": bytes_out2 - bytes_out, "reads": frame_reads(client) - reads}


def traffic_figures(traffic: dict[str, int], events: int, frames: int) -> dict[str, Any]:
    return {
        "in_bytes_per_event": round(traffic["in"] / events),
        "out_bytes_per_event": round(traffic["out"] / events),
        "in_per_frame_byte": round(traffic["in"] / frames, 3),
        "out_per_frame_byte": round(traffic["out"] / frames, 3),
        "worker_frame_reads_per_frame_byte": round(traffic["reads"] / frames, 3),
    }


def submit_all(pool: Any, completions: Completions, trace: list[dict[str, Any]], concurrency: int,
               timeout: float) -> dict[str, float]:
    """Send the trace keeping `concurrency` events in flight; event_id -> latency in ms."""
    sent: dict[str, float] = {}
    pending = list(trace)
    in_flight: set[str] = set()
    deadline = time.monotonic() + timeout
    while pending or in_flight:
        while pending and len(in_flight) < concurrency:
            event = pending.pop(0)
            sent[event["event_id"]] = time.perf_counter()
            pool.client.submit(event)
            in_flight.add(event["event_id"])
        with completions.ready:
            done = {e for e in in_flight if e in completions.finished}
            if not done:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(in_flight)} events still in flight after {timeout}s")
                completions.ready.wait(0.5)
                continue
        in_flight -= done
    return {e: (completions.finished[e] - t) * 1000 for e, t in sent.items()}


def run_pool(trace: list[dict[str, Any]], warmup: list[dict[str, Any]], models_dir: Path, env: dict[str, str],
             log_dir: Path, *, cpu_workers: int = 1, batch_size: int = 1, threads: int | None = None,
             concurrency: int = 4,
             sequential: bool = True, keyed: bool = False, timeout: float = 600) -> dict[str, Any]:
    """Start redis-server and the pool, warm it, then measure the trace one at a time and/or concurrently."""
    from workers.local_pool import LocalPool, RedisServer

    server = RedisServer().start()
    pool = LocalPool(server.url, models_dir, log_dir, env=env, cpu_workers=cpu_workers, batch_size=batch_size,
                     threads=threads)
    client = server.client()
    report: dict[str, Any] = {"device_workers": cpu_workers, "batch_size": batch_size, "threads": threads,
                              "concurrency": concurrency}
    try:
        pool.start(expected_workers=1 + cpu_workers)
        completions = Completions(client)
        submit_all(pool, completions, warmup, 1, timeout)  # models load here, not in the measured trace
        if sequential:
            latencies = submit_all(pool, completions, trace, 1, timeout)
            results = [json.loads(client.get(result_key(e["event_id"]))) for e in trace]
            lat = [latencies[e["event_id"]] for e in trace]
            models = [model_ms(r) for r in results]
            report["sequential"] = {
                "latency_ms": percentiles(lat), "model_ms": percentiles(models),
                "overhead_ms": percentiles([a - b for a, b in zip(lat, models)]),
                "router_ms": percentiles([r.get("timings", {}).get("route_ms", 0.0) for r in results]),
            }
            # The floor: one task round trip (a malformed event is answered by the router alone).
            bad = [{"event_id": f"floor-{n}", "detection_type": "person"} for n in range(10)]
            floor = submit_all(pool, completions, bad, 1, timeout)
            report["sequential"]["one_task_round_trip_ms"] = percentiles(list(floor.values()))
            client.delete(*[result_key(e["event_id"]) for e in trace])
            trace = [dict(e, event_id=e["event_id"] + "-c") for e in trace]

        def concurrently() -> tuple[dict[str, float], float]:
            started = time.perf_counter()
            return submit_all(pool, completions, trace, concurrency, timeout), time.perf_counter() - started

        (latencies, elapsed), traffic = measure_traffic(client, concurrently)
        results = [json.loads(client.get(result_key(e["event_id"]))) for e in trace]
        frames = sum(frame_bytes(e) for e in trace)
        count = len(trace)
        report["concurrent"] = {
            "events": count, "seconds": round(elapsed, 3), "events_per_s": round(count / elapsed, 2),
            "latency_ms": percentiles([latencies[e["event_id"]] for e in trace]),
        }
        report["redis"] = {"frame_bytes_per_event": round(frames / count)} | traffic_figures(traffic, count, frames) | {
            "models_per_event": round(sum(len(r.get("models", {})) for r in results) / count, 2),
        }
        if keyed:
            keyed_trace = [dict(e, event_id=e["event_id"] + "-k") for e in trace]
            _, traffic = measure_traffic(  # the backend's own SET of each frame counts as its crossing
                client, lambda: submit_all(pool, completions, [by_key(e, client) for e in keyed_trace],
                                           concurrency, timeout))
            report["redis_by_key"] = traffic_figures(traffic, count, frames)
        report["cache"] = cache_figures(results)
        report["batching"] = [
            {k: s.get(k) for k in ("worker", "batches", "batched_requests", "largest_batch", "batch_limit")}
            for s in worker_states(client)
        ]
        completions.close()
        return report
    except Exception:
        sys.stderr.write(pool.log_tail(60) + "\n")
        raise
    finally:
        pool.stop()
        client.close()
        server.cleanup()


# -- the command ----------------------------------------------------------------------------------------------

def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    direct, pool = report["direct"], report["pool"]
    summary = {
        "pool_over_direct_throughput": ratio(pool["concurrent"]["events_per_s"], direct["events_per_s"]),
        "overhead_ms_p50": pool.get("sequential", {}).get("overhead_ms", {}).get("p50"),
        "one_task_round_trip_ms_p50": pool.get("sequential", {}).get("one_task_round_trip_ms", {}).get("p50"),
        "frame_reads_per_frame_byte": pool["redis"]["worker_frame_reads_per_frame_byte"],
        "redis_in_per_frame_byte": pool["redis"]["in_per_frame_byte"],
        "redis_in_per_frame_byte_by_key": pool["redis_by_key"]["in_per_frame_byte"],
    }
    if "pool_no_events" in report:
        summary["overhead_ms_p50_without_task_events"] = report["pool_no_events"]["sequential"]["overhead_ms"]["p50"]
    if "batched" in report:
        summary["batched_over_pool_throughput"] = ratio(
            report["batched"]["concurrent"]["events_per_s"], pool["concurrent"]["events_per_s"])
        summary["batched_over_threads_throughput"] = ratio(
            report["batched"]["concurrent"]["events_per_s"], report["threads"]["concurrent"]["events_per_s"])
        summary["batched_over_direct_throughput"] = ratio(
            report["batched"]["concurrent"]["events_per_s"], direct["events_per_s"])
    if "affinity" in report:
        summary["loads_per_event_with_affinity"] = report["affinity"]["on"]["cache"]["loads_per_event"]
        summary["loads_per_event_without_affinity"] = report["affinity"]["off"]["cache"]["loads_per_event"]
        summary["skipped_with_affinity"] = report["affinity"]["on"]["cache"]["skipped"]
        summary["skipped_without_affinity"] = report["affinity"]["off"]["cache"]["skipped"]
    return summary


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"bench: {report['events']} events, {report['models']} models, seed {report['seed']}")
    for column in ("run", "events/s", "p50 ms", "p95 ms", "p99 ms", "overhead p50 ms", "loads/event", "hit rate",
                   "skipped", "partial"):
        table.add_column(column, justify="right" if column != "run" else "left")
    direct = report["direct"]
    table.add_row("direct", str(direct["events_per_s"]), *[str(direct["latency_ms"][q]) for q in ("p50", "p95", "p99")],
                  str(direct["overhead_ms"]["p50"]), "-", "-", "-", "-")
    runs = [("pool", report["pool"])] + [
        (name.replace("_", " "), report[name]) for name in ("pool_no_events", "threads", "batched") if name in report]
    if "affinity" in report:
        runs += [("affinity on", report["affinity"]["on"]), ("affinity off", report["affinity"]["off"])]
    for name, run in runs:
        seq = run.get("sequential", {})
        lat = seq.get("latency_ms") or run["concurrent"]["latency_ms"]
        table.add_row(f"{name} ({'1 at a time' if seq else 'concurrent'} latency)", str(run["concurrent"]["events_per_s"]),
                      *[str(lat[q]) for q in ("p50", "p95", "p99")], str(seq.get("overhead_ms", {}).get("p50", "-")),
                      str(run["cache"]["loads_per_event"]), str(run["cache"]["hit_rate"]), str(run["cache"]["skipped"]),
                      str(run["cache"]["statuses"]["partial"]))
    Console(width=160).print(table)
    Console().print_json(data={"redis (frames inline)": report["pool"]["redis"],
                               "redis (frames by image_key)": report["pool"]["redis_by_key"],
                               "summary": report["summary"]})


@app.command()
def main(
    events: int = typer.Option(40, min=1, help="Events in the measured trace"),
    noop: bool = typer.Option(False, help="No-op models: measure orchestration alone"),
    seed: int = typer.Option(7, help="Trace seed"),
    concurrency: int = typer.Option(4, min=1, help="Events in flight in the throughput phase"),
    batch_size: int = typer.Option(4, min=1, help="Micro-batch bound of the batched run (1 skips it)"),
    affinity: bool = typer.Option(True, help="Run the two-worker affinity comparison"),
    affinity_share_mb: int = typer.Option(4096, help="Memory share of each worker in the affinity runs"),
    models_dir: Path = typer.Option(REPO / "var" / "tiny-models", help="Tiny models (generated when missing)"),
    report_path: Path = typer.Option(REPO / "var" / "bench" / "report.json", "--report", help="JSON report"),
) -> None:
    """Replay one trace through the direct pipeline and the pool; print the figures, write the JSON report."""
    os.environ.update(OFFLINE)
    work = Path(tempfile.mkdtemp(prefix="mz-bench-"))
    env = {"MEMORY_SHARE_MB": "16384", "METRICS_PORT_BASE": "0"}
    if noop:
        env |= noop_environment(work)
    else:
        typer.echo(f"tiny models in {models_dir} ...")
        tiny_models(models_dir)
    trace = make_trace(events, seed, "bench")
    warmup = make_trace(10, seed + 1, "warm") + [
        sample_events.person_event("warm-s", face=True, suspicious=80, frames=8),
        sample_events.vehicle_event("warm-v"), sample_events.animal_event("warm-a"),
    ]
    report: dict[str, Any] = {
        "events": events, "seed": seed, "models": "noop" if noop else "tiny", "machine": platform.machine(),
        "cpus": os.cpu_count(), "python": platform.python_version(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the direct run reads the same family/path overrides as the workers
    try:
        typer.echo("direct ...")
        report["direct"] = run_direct(trace, models_dir, env)
    finally:
        for key, value in previous.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    typer.echo("pool (prefork, one device worker) ...")
    report["pool"] = run_pool(trace, warmup, models_dir, env, work / "pool", concurrency=concurrency, keyed=True)
    if noop:
        typer.echo("pool without task events (TASK_EVENTS=0) ...")
        report["pool_no_events"] = run_pool(trace, warmup, models_dir, env | {"TASK_EVENTS": "0"},
                                            work / "pool-no-events", concurrency=concurrency)
    if batch_size > 1:
        from workers.launch import BATCH_WINDOW

        threads = BATCH_WINDOW * batch_size
        typer.echo(f"pool with {threads} threads, no batching ...")
        report["threads"] = run_pool(trace, warmup, models_dir, env, work / "threads", threads=threads,
                                     concurrency=concurrency * 2, sequential=False)
        typer.echo(f"pool with {threads} threads and micro-batching (batch {batch_size}) ...")
        report["batched"] = run_pool(trace, warmup, models_dir, env, work / "batched", batch_size=batch_size,
                                     concurrency=concurrency * 2, sequential=False)
    if affinity:
        shares = env | {"MEMORY_SHARE_MB": str(affinity_share_mb)}
        report["affinity"] = {}
        for label, flag in (("on", "1"), ("off", "0")):
            typer.echo(f"two device workers, affinity {label} ...")
            report["affinity"][label] = run_pool(
                trace, [], models_dir, shares | {"AFFINITY_ROUTING": flag}, work / f"affinity-{label}",
                cpu_workers=2, concurrency=concurrency, sequential=False)
    report["summary"] = summarise(report)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    typer.echo(f"report: {report_path}")


if __name__ == "__main__":
    app()
