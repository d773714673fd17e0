#!/usr/bin/env python3
"""What Celery alone costs for one event's shape of tasks: the floor under the pool's orchestration overhead.

    python scripts/celery_floor.py                 # 200 events, 7 no-op model tasks each, events on
    python scripts/celery_floor.py --models 7 --events 300 --no-task-events

The same hops as the pool, with none of the pool's code in them: a client sends a `route` task to a prefork
worker (2 children, like the router), which sends a chord of MODELS no-op tasks to a threads worker (like a
device worker) with the pool's own chord sender, whose callback `collect` runs back on the prefork worker and
stores the result the client waits for. Same celeryconfig (JSON, acks_late, prefetch 1, the pool's kombu and
event-batching tuning), same local redis-server. It prints, and writes as JSON, latency one event at a time
(p50/p90), events/s with --concurrency in flight, and CPU milliseconds per event of every process (from /proc).
Compare with `python scripts/bench.py --noop`: the difference is what admission, planning, frames, the model
runtime and assembly add.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

from celery import Celery  # noqa: E402

from tasks.celery_internals import redis_clients as kombu_clients  # noqa: E402
from tasks.local_pool import cpu_seconds, descendants  # noqa: E402

kombu_clients.install()

ROUTE_QUEUE, MODEL_QUEUE = "floor.router", "floor.device"

floor = Celery("celery_floor")
floor.config_from_object("celeryconfig")
floor.conf.task_routes = {"floor_route": {"queue": ROUTE_QUEUE}, "floor_collect": {"queue": ROUTE_QUEUE},
                          "floor_model": {"queue": MODEL_QUEUE}}
floor.conf.beat_schedule = {}
floor.conf.task_annotations = {}


@floor.task(name="floor_model", ignore_result=True)
def floor_model(index: int) -> dict[str, Any]:
    return {"model": f"m{index}", "status": "ok"}


@floor.task(name="floor_collect")
def floor_collect(records: list[dict[str, Any]], event_id: str) -> dict[str, Any]:
    return {"event_id": event_id, "models": len(records)}


@floor.task(name="floor_route", bind=True, ignore_result=True)
def floor_route(self: Any, event_id: str, models: int) -> None:
    from kombu.utils.uuid import uuid

    from tasks.celery_internals.chords import send_chord

    header = [floor_model.si(i).set(queue=MODEL_QUEUE, task_id=uuid()) for i in range(models)]
    send_chord(floor, header, floor_collect.s(event_id), group_id=uuid(), body_id=self.request.id,
               root_id=self.request.root_id or self.request.id, parent_id=self.request.id)


def cpu_of(processes: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each named group of processes."""
    return {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in processes.items()}


def per_event_ms(before: dict[str, float], after: dict[str, float], events: int) -> dict[str, float]:
    return {name: round((after[name] - before[name]) * 1000 / events, 2) for name in before}


def main(events: int = 200, models: int = 7, concurrency: int = 8, task_events: bool = True,
         report: Path = REPO / "var" / "bench" / "celery_floor.json") -> None:
    import typer

    from tasks.local_pool import RedisServer, stop_process_group

    server = RedisServer().start()
    work = Path(tempfile.mkdtemp(prefix="celery-floor-"))
    env = os.environ | {"REDIS_URL": server.url, "PYTHONPATH": os.pathsep.join(sys.path[:2]),
                        "TASK_EVENTS": "1" if task_events else "0"}
    env.setdefault("POOL_SIGNING_KEY", secrets.token_hex(32))  # its messages are signed as the pool's are
    flags = ["-E"] if task_events else []
    commands = {
        "router-like (prefork, 2 children)": ["-Q", ROUTE_QUEUE, "-P", "prefork", "-c", "2", "-n", "route@%h"],
        "device-like (threads)": ["-Q", MODEL_QUEUE, "-P", "threads", "-c", "32", "-n", "device@%h"],
    }
    workers = {}
    try:
        for name, args in commands.items():
            log = (work / f"{name.split()[0]}.log").open("ab")
            workers[name] = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "celery_floor", "worker", "--loglevel", "warning", *flags, *args],
                cwd=REPO / "scripts", env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        floor.conf.broker_url = floor.conf.result_backend = server.url
        deadline = time.monotonic() + 60
        while len(floor.control.ping(timeout=1.0) or []) < 2:
            if time.monotonic() > deadline:
                raise SystemExit(f"workers did not start; logs in {work}")

        def send(event_id: str) -> Any:
            return floor_route.apply_async((event_id, models), ignore_result=False)

        for i in range(20):  # warm-up
            send(f"warm-{i}").get(timeout=30)
        processes = {name: [p.pid, *descendants(p.pid)] for name, p in workers.items()}
        processes["redis-server"] = [server.process.pid]
        before = cpu_of(processes)
        latencies = []
        for i in range(events):
            started = time.perf_counter()
            send(f"seq-{i}").get(timeout=30)
            latencies.append((time.perf_counter() - started) * 1000)
        cpu = per_event_ms(before, cpu_of(processes), events)
        before = cpu_of(processes)
        started, in_flight = time.perf_counter(), []
        for i in range(events):
            in_flight.append(send(f"par-{i}"))
            if len(in_flight) >= concurrency:
                in_flight.pop(0).get(timeout=30)
        for result in in_flight:
            result.get(timeout=30)
        throughput = events / (time.perf_counter() - started)
        cpu_loaded = per_event_ms(before, cpu_of(processes), events)
        latencies.sort()
        figures = {
            "events": events, "model_tasks_per_event": models, "task_events": task_events,
            "latency_ms_p50": round(statistics.median(latencies), 2),
            "latency_ms_p90": round(latencies[int(len(latencies) * 0.9)], 2),
            "events_per_second": round(throughput, 1), "concurrency": concurrency,
            "cpu_ms_per_event": cpu, "cpu_ms_per_event_total": round(sum(cpu.values()), 2),
            "cpu_ms_per_event_in_flight": cpu_loaded,
            "cpu_ms_per_event_in_flight_total": round(sum(cpu_loaded.values()), 2),
        }
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(figures, indent=2))
        typer.echo(json.dumps(figures, indent=2))
    finally:
        for process in workers.values():
            stop_process_group(process)
        server.cleanup()


if __name__ == "__main__":
    import typer

    typer.run(main)
