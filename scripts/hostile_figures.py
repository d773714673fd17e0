#!/usr/bin/env python3
"""What a sender with only a backend's access to Redis can make the pool do, measured: each case of issue 25 sent
to a real pool (tiny models), with the router's and the device worker's peak memory and CPU read from /proc.

    python scripts/hostile_figures.py                         # this checkout's pool
    python scripts/hostile_figures.py --source /path/to/old   # another checkout's pool (its tasks/, workers/)
    python scripts/hostile_figures.py --only zlib_bomb --only eta_parked --json var/hostile/report.json

Per case: what happened (the sender's answer, or none within the wait), and for the router worker (its parent and
children together) and the device worker: the rise of their peak resident memory over their size before the case
(VmHWM, reset with /proc/<pid>/clear_refs before each case, less VmRSS before; summed over the processes alive
before and after) and the CPU seconds they spent, from the moment before the case was sent until its answer (or
the wait's end). The pool's code comes from --source (default: this checkout); only
tasks.local_pool, tasks.client and scripts.fixtures are used from it, so an older checkout runs too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


# -- /proc -----------------------------------------------------------------------------------------------
def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def worker_processes(pool_pid: int) -> dict[str, list[int]]:
    """The router worker's processes (parent, prefork children, beat) and the device worker's, by node name."""
    from tasks.local_pool import descendants

    groups: dict[str, list[int]] = {"router": [], "device": []}
    for pid in descendants(pool_pid):
        line = cmdline(pid)
        name = "router" if " router@" in line else "device" if " cpu0@" in line else None
        if name and not any(pid in pids for pids in groups.values()):
            groups[name] += [pid, *descendants(pid)]
    return groups


def status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peaks(pool_pid: int) -> None:
    """Start every worker process's peak resident size (VmHWM) afresh from its current size (clear_refs 5)."""
    for pids in worker_processes(pool_pid).values():
        for pid in pids:
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                pass


def snapshot(pool_pid: int, peak: bool = True) -> dict[str, dict[int, tuple[int, float]]]:
    """Per group, per process: (peak resident KB, or the current one with peak=False; CPU seconds)."""
    from tasks.local_pool import cpu_seconds

    field = "VmHWM" if peak else "VmRSS"
    return {name: {pid: (status_kb(pid, field), cpu_seconds(pid)) for pid in pids}
            for name, pids in worker_processes(pool_pid).items()}


def difference(before: dict, after: dict) -> dict[str, dict[str, float]]:
    """Peak memory rise over the size before (MB) and CPU seconds per group; a process that appeared counts its CPU
    from zero and not its memory."""
    out = {}
    for name in after:
        peak = sum(max(0, kb - before.get(name, {}).get(pid, (0, 0.0))[0]) for pid, (kb, _) in after[name].items()
                   if pid in before.get(name, {}))
        cpu = sum(seconds - before.get(name, {}).get(pid, (0, 0.0))[1] for pid, (_, seconds) in after[name].items())
        out[name] = {"peak_rss_rise_mb": round(peak / 1024, 1), "cpu_s": round(cpu, 2)}
    return out


# -- raw messages --------------------------------------------------------------------------------------------
def publish_raw(url: str, queue: str, body: bytes, headers: dict[str, Any], content_type: str = "application/json",
                compression: str | None = None) -> None:
    """Publish a message with exactly this body and these headers (kombu's Redis transport, no signature)."""
    from kombu import Connection, Exchange, Producer

    if compression:
        headers = headers | {"compression": compression}
    with Connection(url) as connection:
        Producer(connection).publish(body, exchange=Exchange(queue, type="direct"), routing_key=queue, declare=[],
                                     content_type=content_type, content_encoding="utf-8", headers=headers)


def task_headers(name: str, task_id: str, **extra: Any) -> dict[str, Any]:
    return {"lang": "py", "task": name, "id": task_id, "root_id": task_id, "parent_id": None, "group": None,
            "argsrepr": "", "kwargsrepr": "", "retries": 0, "eta": None, "expires": None, **extra}


def v2_body(args: list) -> bytes:
    return json.dumps([args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]).encode()


def big_jpeg(pixels: int) -> bytes:
    from PIL import Image

    width = int((pixels * 4 / 3) ** 0.5)
    buffer = io.BytesIO()
    Image.new("RGB", (width, pixels // width), (90, 100, 110)).save(buffer, format="JPEG", quality=50)
    return buffer.getvalue()


# -- cases -------------------------------------------------------------------------------------------------
class Case:
    """One attack: send it, then wait for the sender's answer (or `wait` seconds)."""

    def __init__(self, pool: Any, wait: float = 30.0):
        self.pool, self.wait = pool, wait
        self.redis = pool.client.redis
        self.app = pool.client.app

    def answer(self, task_id: str, wait: float | None = None) -> dict | str:
        from celery.result import AsyncResult

        try:
            return AsyncResult(task_id, app=self.app).get(timeout=wait or self.wait)
        except Exception as exc:
            return f"no answer ({type(exc).__name__})"


def summary(answer: Any) -> str:
    if isinstance(answer, dict):
        return f"{answer.get('status')}: {json.dumps(answer.get('errors', {}))[:160]}"
    return str(answer)[:160]


def case_forged_assemble_on_router(case: Case) -> dict:
    from scripts.fixtures.sample_events import vehicle_event

    victim, event_id = f"backend:victim-{uuid.uuid4().hex[:6]}", f"forged-{uuid.uuid4().hex[:6]}"
    case.redis.set(victim, b"a backend's frame", ex=600)
    stored = case.pool.client.enrich(vehicle_event(event_id), timeout=300)
    routed = {"event": {"event_id": event_id, "camera_id": "x", "timestamp": "2026-01-01T00:00:00Z",
                        "detection_type": "vehicle", "confidence": 0.9, "bbox": [0, 0, 10, 10]},
              "planned": ["vehicle"], "placement": {}, "task_ids": {}, "frame_key": victim, "owned_keys": [victim],
              "frame_size": [10, 10], "received_at": 0, "routed_at": 0}
    record = {"model": "vehicle", "status": "ok", "data": {"label": "tank", "confidence": 1.0}}
    pending = case.app.send_task("assemble", args=[[record], routed], queue="router")
    answer = case.answer(pending.id, 15)
    time.sleep(1)
    return {"answer": summary(answer), "victim_key_deleted": not case.redis.exists(victim),
            "stored_result_replaced": case.pool.client.stored(event_id) != stored}


def case_forged_run_model_on_router(case: Case) -> dict:
    request = {"event_id": "forged-run", "model": "pet", "frame_key": "frame:none", "bbox": [0, 0, 10, 10],
               "detection_type": "animal", "camera_id": "x"}
    pending = case.app.send_task("run_model", args=[request], queue="router")
    answer = case.answer(pending.id, 15)
    time.sleep(1)
    acting = [key.decode() for key in case.redis.scan_iter("workers:state:router*")]
    return {"answer": summary(answer), "router_published_device_state": acting}


def case_zlib_bomb(case: Case) -> dict:
    task_id = str(uuid.uuid4())
    inflated = v2_body([{"event_id": "bomb", "padding": "0" * (512 * 1024 * 1024)}])
    body = zlib.compress(inflated, 9)
    del inflated
    publish_raw(case.pool.redis_url, "router", body, task_headers("enrich_detection", task_id),
                compression="application/x-gzip")
    return {"sent_bytes": len(body), "answer": summary(case.answer(task_id))}


def case_big_message_other_name(case: Case, megabytes: int = 18) -> dict:
    task_id = str(uuid.uuid4())
    items = megabytes * 1024 * 1024 // 10
    body = ('[[' + ', '.join(['{"a": 0}'] * items) + '], {}, {"callbacks": null, "errbacks": null, "chain": null, '
            '"chord": null}]').encode()
    publish_raw(case.pool.redis_url, "router", body, task_headers("assemble", task_id))
    return {"sent_bytes": len(body), "answer": summary(case.answer(task_id, 60))}


def case_protocol_1(case: Case, megabytes: int = 18) -> dict:
    task_id = str(uuid.uuid4())
    items = megabytes * 1024 * 1024 // 10
    body = json.dumps({"task": "enrich_detection", "id": task_id, "args": [[{"a": 0}] * items], "kwargs": {},
                       "retries": 0, "eta": None}).encode()
    publish_raw(case.pool.redis_url, "router", body, {})
    return {"sent_bytes": len(body), "answer": summary(case.answer(task_id, 60))}


def case_eta_parked(case: Case, count: int = 16, megabytes: int = 8) -> dict:
    from scripts.fixtures.sample_events import vehicle_event

    eta = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    ids = []
    for _ in range(count):
        event = vehicle_event(f"eta-{uuid.uuid4().hex[:6]}") | {"padding": "x" * (megabytes * 1024 * 1024)}
        ids.append(case.app.send_task("enrich_detection", args=[event], queue="router", eta=eta).id)
    answers = [case.answer(task_id, 10) for task_id in ids[:2]]
    time.sleep(3)
    return {"answers": [summary(a) for a in answers], "unacked_in_redis": case.redis.hlen("unacked")}


def case_pixels(case: Case, frames: int = 16, megapixels: float = 39.9) -> dict:
    from scripts.fixtures.sample_events import b64, vehicle_event

    jpeg = b64(big_jpeg(int(megapixels * 1e6)))
    event = vehicle_event(f"pixels-{uuid.uuid4().hex[:6]}") | {"image": jpeg, "bbox": [10, 10, 2000, 2000],
                                                                "frames": [{"image": jpeg}] * frames}
    started = time.monotonic()
    answer = case.pool.client.enrich(event, timeout=300)
    return {"message_bytes": len(json.dumps(event)), "answer": summary(answer),
            "seconds": round(time.monotonic() - started, 2)}


def case_timestamp_edge(case: Case) -> dict:
    from scripts.fixtures.sample_events import vehicle_event

    event_id = f"edge-{uuid.uuid4().hex[:6]}"
    answer = case.pool.client.submit(vehicle_event(event_id) | {"timestamp": "9999-12-31T23:59:59-01:00"})
    result = case.answer(answer.id, 60)
    time.sleep(1)
    left = sorted(key.decode() for key in case.redis.scan_iter(f"*{event_id}*"))
    return {"answer": summary(result), "keys_left": left}


def rejection_round_trip(case: Case, samples: int = 20) -> float:
    times = []
    for _ in range(samples):
        started = time.monotonic()
        case.pool.client.enrich({"event_id": "bad"}, timeout=30)
        times.append((time.monotonic() - started) * 1000)
    return round(statistics.median(times), 1)


def case_duplicates(case: Case, count: int = 300) -> dict:
    from scripts.fixtures.sample_events import vehicle_event

    quiet = rejection_round_trip(case)
    event = vehicle_event(f"dup-{uuid.uuid4().hex[:6]}")
    case.redis.set(f"claim:{event['event_id']}", "1", ex=600)  # an original in flight
    pending = [case.pool.client.submit(event) for _ in range(count)]
    time.sleep(5)
    busy = rejection_round_trip(case)
    case.redis.delete(f"claim:{event['event_id']}")
    case.pool.client.enrich(event, timeout=300)  # the original completes
    answered = sum(1 for p in pending if isinstance(case.answer(p.id, 30), dict))
    return {"rejection_round_trip_ms_quiet": quiet, "rejection_round_trip_ms_with_duplicates_waiting": busy,
            "duplicates_answered": answered}


def case_unanswered_kinds(case: Case) -> dict:
    out = {}
    for name, content_type, body, task in (
        ("yaml", "application/x-yaml", b"- [1]\n- {}\n- {}\n", "enrich_detection"),
        ("text", "text/plain", b"hello", "enrich_detection"),
        ("unknown task", "application/json", v2_body([{}]), "no_such_task"),
    ):
        task_id = str(uuid.uuid4())
        publish_raw(case.pool.redis_url, "router", body, task_headers(task, task_id), content_type=content_type)
        out[name] = summary(case.answer(task_id, 10))
    return out


CASES: dict[str, Callable[[Case], dict]] = {
    "forged_assemble_on_router": case_forged_assemble_on_router,
    "forged_run_model_on_router": case_forged_run_model_on_router,
    "zlib_bomb": case_zlib_bomb,
    "big_message_other_name": case_big_message_other_name,
    "protocol_1": case_protocol_1,
    "eta_parked": case_eta_parked,
    "pixels_16_frames_39_9_mp": case_pixels,
    "timestamp_edge": case_timestamp_edge,
    "duplicates_300": case_duplicates,
    "not_json_or_unknown_task": case_unanswered_kinds,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=REPO, help="checkout whose pool runs (default: this one)")
    parser.add_argument("--models-dir", type=Path, default=REPO / "var" / "tiny-models", help="tiny models (generated "
                        "by scripts/make_tiny_models.py)")
    parser.add_argument("--only", action="append", choices=sorted(CASES), help="run only these cases")
    parser.add_argument("--json", type=Path, default=REPO / "var" / "hostile" / "report.json")
    options = parser.parse_args()
    source = options.source.resolve()
    sys.path[:0] = [str(source), str(REPO)]
    os.environ.update(PYTHONPATH=str(source))  # the pool's processes import its code
    from tasks.local_pool import LocalPool, RedisServer

    server = RedisServer().start()
    logs = Path(tempfile.mkdtemp(prefix="hostile-"))
    pool = LocalPool(server.url, options.models_dir, logs, env={"METRICS_PORT_BASE": "0"})
    report: dict[str, Any] = {"source": str(source), "cases": {}}
    options.json.parent.mkdir(parents=True, exist_ok=True)
    try:
        pool.start(timeout=300)
        from scripts.fixtures.sample_events import vehicle_event

        pool.client.enrich(vehicle_event("warm-up"), timeout=300)  # models loaded before anything is measured
        for name in options.only or CASES:
            reset_peaks(pool.process.pid)
            before = snapshot(pool.process.pid, peak=False)
            started = time.monotonic()
            try:
                outcome = CASES[name](Case(pool))
            except Exception as exc:
                outcome = {"error": f"{type(exc).__name__}: {exc}"}
            outcome |= {"wall_s": round(time.monotonic() - started, 2)} | difference(before, snapshot(pool.process.pid))
            report["cases"][name] = outcome
            print(f"{name}: {json.dumps(outcome)}", flush=True)
            options.json.write_text(json.dumps(report, indent=2))
    finally:
        pool.stop()
        server.cleanup()
    print(f"report: {options.json}; pool log: {pool.log_path}")


if __name__ == "__main__":
    main()
