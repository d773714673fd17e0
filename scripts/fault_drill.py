"""Faults an operator meets, against a real pool: bursts of events with a fault injected mid-burst, then a count.

Each case starts its own redis-server (append-only file, fsync every second, as docker-compose.yml runs it) and pool
(`python -m workers start`, no-op models by default so that the figures are about delivery, person events with
~70 KB frames), then runs ROUNDS rounds: a burst of EVENTS events sent at --rate per second, the fault injected a
third of the way in, and a wait of up to --hang-after seconds for every accepted event to be stored at
enrichment:<event_id>. Per round it counts: sent (accepted by Redis), refused (the send itself failed: Redis down or
full), stored (complete / partial), lost (not stored, and nothing left that would store it: no claim, no ledger
entry, no message), hung (not stored within --hang-after, but something left that would), announced more than once,
and the time to recover (from the fault to the last result stored). A result not complete must name its reason in
`errors` (counted `unexplained` otherwise); in the redis-full case ten ordinary events sent after each burst must
end complete (`after_sent`, `after_complete`: a pool that stalled on the full Redis does not store them).

    python scripts/fault_drill.py --case redis-kill --rounds 10 --events 200 --json var/faults/redis-kill.json
    python scripts/fault_drill.py --case all --rounds 10 --json var/faults/report.json

Cases: redis-kill (kill -9, restarted on the same port and data 2 s later), redis-shutdown (SHUTDOWN NOSAVE, then
restarted), redis-full (maxmemory 50 MB, noeviction, 2 MB frames; a third of the way in, filled to 1 MB short of
maxmemory for 1 s), router-kill (kill -9 of the router worker),
group-term (SIGTERM to every process of the pool at once, as systemd's KillMode=control-group does, then started
again), launcher-term (SIGTERM to the launcher, then started again), host-kill (a second host's device worker, sharing
the work, killed -9), second-host (no fault: how the model tasks spread over two hosts). Exit code 1 when an event
was lost or hung, announced twice, or not complete without a reason, or when the pool stalled after a full Redis.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import redis  # noqa: E402

from scripts.fixtures.sample_events import person_event  # noqa: E402
from tasks.local_pool import LocalPool, RedisServer, descendants  # noqa: E402
from tasks.results import COMPLETED_CHANNEL  # noqa: E402
from workers.registry import MODELS  # noqa: E402

CASES = ("redis-kill", "redis-shutdown", "redis-full", "router-kill", "group-term", "launcher-term", "host-kill",
         "second-host")
FULL_MAXMEMORY = 50 * 1024 * 1024
FULL_LEFT_BYTES = 1024 * 1024  # what the fault leaves free: less than one of the case's frames
FULL_HOLD_SECONDS = 1.0
BALLAST_KEY = "fault-drill:ballast"


def noop_environment(root: Path) -> dict[str, str]:
    """Every model swapped for the no-op family (each answering the smallest result its section accepts): delivery,
    not models, is under test."""
    from scripts.fixtures.noop import write_noop

    env = {}
    for entry in MODELS:  # one directory per model: the no-op answers the section its directory names
        write_noop(root / "noop" / entry.name)
        env[entry.family_env] = "scripts.fixtures.noop:NoopModel"
        env[entry.path_env] = str(root / "noop" / entry.name)
    return env


def large_frame(megabytes: float = 2.0, seed: int = 0) -> bytes:
    """A JPEG of about `megabytes` (noise does not compress)."""
    from PIL import Image

    rng = random.Random(seed)
    side = int((megabytes * 1024 * 1024 / 1.6) ** 0.5)
    image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


class Announcements:
    """Counts enrichment.completed per event id (a result announced twice would be a result stored twice)."""

    def __init__(self, url: str):
        self.counts: Counter[str] = Counter()
        self.url = url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                client = redis.Redis.from_url(self.url, socket_timeout=2)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(COMPLETED_CHANNEL)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message:
                        self.counts[json.loads(message["data"])["event_id"]] += 1
            except (redis.RedisError, OSError):
                time.sleep(0.3)  # Redis is down: listen again when it is back

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)


@dataclass
class Drill:
    """A redis-server and a pool (and a second host's device worker for the host cases), faults, and the counting."""

    case: str
    root: Path
    models_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    server: RedisServer | None = None
    pool: LocalPool | None = None
    host2: subprocess.Popen | None = None
    starts: int = 0

    @property
    def two_hosts(self) -> bool:
        return self.case in ("host-kill", "second-host")

    def start(self) -> Drill:
        self.server = RedisServer(persistent=True).start()
        self.server_config()
        self.start_pool()
        if self.two_hosts:
            self.start_host2()
        return self

    def server_config(self) -> None:
        client = self.server.client()
        client.config_set("appendfsync", "everysec")
        if self.case == "redis-full":
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", str(FULL_MAXMEMORY))

    def start_pool(self) -> None:
        self.starts += 1
        self.pool = LocalPool(self.server.url, self.models_dir, self.root / f"pool{self.starts}", env=self.env)
        self.pool.start(expected_workers=2 + (1 if self.two_hosts and self.host2 else 0), timeout=180)

    def host2_environment(self) -> dict[str, str]:
        return self.pool.environment() | {"PYTHONPATH": str(REPO)}

    def start_host2(self) -> None:
        """A second host: a CPU device worker on its own queue (cpu.1), as README's "More GPU hosts" runs one."""
        log = (self.root / "host2.log").open("ab")
        self.host2 = subprocess.Popen([sys.executable, "-m", "workers", "device", "--cpu", "--index", "1"], cwd=REPO,
                                      env=self.host2_environment(), stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if len(self.pool.client.app.control.ping(timeout=1.0) or []) >= 3:
                return
        raise RuntimeError("the second host's worker never answered")

    def stop(self) -> None:
        if self.host2 is not None and self.host2.poll() is None:
            os.killpg(self.host2.pid, signal.SIGKILL)
            self.host2.wait()
        if self.pool is not None:
            self.pool.stop()
        if self.server is not None:
            self.server.cleanup()

    # -- faults ---------------------------------------------------------------------------------------------------
    def fault(self) -> Callable[[], None] | None:
        return {
            "redis-kill": self.kill_redis, "redis-shutdown": self.shutdown_redis, "router-kill": self.kill_router,
            "group-term": self.terminate_group, "launcher-term": self.terminate_launcher, "host-kill": self.kill_host2,
            "redis-full": self.fill_redis,
        }.get(self.case)

    def fill_redis(self) -> None:
        """Fill Redis to its maxmemory for FULL_HOLD_SECONDS, then free the room: the burst's 2 MB frames alone fill
        it only while the pool drains slower than they come (a fast pool kept up in one CI run: nothing was refused)."""
        client = self.server.client()
        room = FULL_MAXMEMORY - int(client.info("memory")["used_memory"]) - FULL_LEFT_BYTES
        if room > 0:
            client.set(BALLAST_KEY, b"\0" * room)
        time.sleep(FULL_HOLD_SECONDS)
        client.delete(BALLAST_KEY)

    def kill_redis(self) -> None:
        self.server.process.kill()
        self.server.process.wait()
        time.sleep(2)
        self.server.start()  # same port, same directory: the AOF brings the data back

    def shutdown_redis(self) -> None:
        try:
            self.server.client().shutdown(nosave=True)
        except redis.RedisError:
            pass
        self.server.process.wait()
        time.sleep(2)
        self.server.start()

    def router_pid(self) -> int:
        for pid in descendants(self.pool.process.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"router@%h" in cmdline and b"worker" in cmdline and self.parent(pid) == self.pool.process.pid:
                return pid
        raise RuntimeError("no router worker found")

    @staticmethod
    def parent(pid: int) -> int:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])

    def kill_router(self) -> None:
        os.kill(self.router_pid(), signal.SIGKILL)  # the supervisor kills what it left and starts it again

    def terminate_group(self) -> None:
        """SIGTERM to every process of the pool at once (systemd's KillMode=control-group), then a fresh start."""
        pids = [self.pool.process.pid, *descendants(self.pool.process.pid)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        self.restart_pool()

    def terminate_launcher(self) -> None:
        os.kill(self.pool.process.pid, signal.SIGTERM)
        self.restart_pool()

    def restart_pool(self) -> None:
        try:
            self.pool.process.wait(timeout=180)
        except subprocess.TimeoutExpired:
            pass
        self.pool.stop()
        self.start_pool()

    def kill_host2(self) -> None:
        os.killpg(self.host2.pid, signal.SIGKILL)
        self.host2.wait()

    # -- a round --------------------------------------------------------------------------------------------------
    def events(self, round_number: int, count: int) -> list[dict[str, Any]]:
        prefix = f"{self.case}-r{round_number}-{int(time.time() * 1000) % 10**8}"
        if self.case != "redis-full":
            return [person_event(f"{prefix}-{n}") for n in range(count)]
        frame = base64.b64encode(large_frame()).decode()
        return [person_event(f"{prefix}-{n}") | {"image": frame} for n in range(count)]

    def round(self, round_number: int, count: int, rate: float, hang_after: float) -> dict[str, Any]:
        events = self.events(round_number, count)
        announcements = Announcements(self.server.url)
        fault, fault_at, fault_done = self.fault(), None, None
        sent, refused = [], 0
        client = self.pool.client
        started = time.monotonic()
        injector = None
        for n, event in enumerate(events):
            if fault is not None and injector is None and n >= len(events) // 3:
                fault_at = time.monotonic()
                injector = threading.Thread(target=fault, daemon=True)
                injector.start()
            try:
                client.submit(event)
                sent.append(event["event_id"])
            except Exception:  # noqa: BLE001 - Redis down or full: the send is refused, the backend knows
                refused += 1
            time.sleep(max(0.0, started + (n + 1) / rate - time.monotonic()))
        if injector is not None:
            injector.join()
            fault_done = time.monotonic()
            client = self.pool.client  # a restarted pool has a new client
        stored, last_stored = self.wait_stored(sent, hang_after, fault_done or started)
        time.sleep(1.0)
        announcements.close()
        missing = [event_id for event_id in sent if event_id not in stored]
        pending = [event_id for event_id in missing if self.something_would_store(event_id)]
        statuses = Counter(result["status"] for result in stored.values())
        reasons = Counter(key for result in stored.values() if result["status"] != "complete"
                          for key in (result.get("errors") or {"(none)": ""}))
        after = self.after_burst() if self.case == "redis-full" else {}
        workers = Counter(record.get("worker", "?").split("@")[0] for result in stored.values()
                          for record in result.get("models", {}).values())
        return {
            "round": round_number, "sent": len(sent), "refused": refused, "stored": len(stored),
            "complete": statuses.get("complete", 0), "partial": statuses.get("partial", 0),
            "lost": len(missing) - len(pending), "hung": len(pending),
            "unexplained": reasons.get("(none)", 0), "partial_reasons": dict(sorted(reasons.items())), **after,
            "partial_examples": dict([(event_id, result.get("errors")) for event_id, result in stored.items()
                                      if result["status"] != "complete"][:2]),
            "announced_twice": sum(1 for n in announcements.counts.values() if n > 1),
            "recover_seconds": round(last_stored - fault_at, 1) if fault_at and last_stored else None,
            "model_tasks_per_worker": dict(sorted(workers.items())),
            "lost_ids": missing[:5],
            "left_behind": {event_id: self.left_behind(event_id) for event_id in missing[:3]},
        }

    def after_burst(self, count: int = 10, timeout: float = 60.0) -> dict[str, int]:
        """Ordinary events (~70 KB frames) sent once the burst is over: a pool that stalled does not store them."""
        ids = [f"{self.case}-after-{int(time.time() * 1000) % 10**8}-{n}" for n in range(count)]
        for event_id in ids:
            until_sent(lambda event_id=event_id: self.pool.client.submit(person_event(event_id)))
        stored, _ = self.wait_stored(ids, timeout, time.monotonic())
        return {"after_sent": count, "after_complete": sum(r["status"] == "complete" for r in stored.values())}

    def wait_stored(self, ids: list[str], timeout: float, since: float) -> tuple[dict[str, dict], float | None]:
        deadline = since + timeout
        stored: dict[str, dict] = {}
        last = None
        reader = redis.Redis.from_url(self.server.url, socket_timeout=5)
        while time.monotonic() < deadline and len(stored) < len(ids):
            todo = [i for i in ids if i not in stored]
            try:
                values = reader.mget([f"enrichment:{i}" for i in todo])
            except redis.RedisError:
                time.sleep(0.5)
                continue
            for event_id, raw in zip(todo, values):
                if raw is not None:
                    stored[event_id] = json.loads(raw)
                    last = time.monotonic()
            time.sleep(0.25)
        return stored, last

    def left_behind(self, event_id: str) -> dict[str, Any]:
        """What an event not stored left in Redis (for the report): its claim, ledger entry, chord join."""
        client = self.server.client()
        found: dict[str, Any] = {"claim": client.get(f"claim:{event_id}"), "ledger": False}
        raw = client.get(f"ledger:{event_id}")
        if raw:
            routed = json.loads(raw)
            group = routed.get("group_id")
            found |= {"ledger": True, "placement": routed.get("placement"),
                      "joined": client.zcard(f"celery-taskset-meta-{group}.j") if group else None,
                      "task_ids": routed.get("task_ids")}
            found["tasks_waiting_or_taken"] = [
                model for model, task_id in (routed.get("task_ids") or {}).items()
                if any(task_id.encode() in raw for raw in client.hvals("unacked"))
                or any(task_id.encode() in raw for q in ("cpu.0", "cpu.1") for raw in client.lrange(q, 0, -1))]
        found["claim"] = found["claim"].decode() if found["claim"] else None
        return found

    def something_would_store(self, event_id: str) -> bool:
        """A claim, a ledger entry (the sweeper finishes it), or a message naming the event still in Redis."""
        client = self.server.client()
        if client.exists(f"ledger:{event_id}", f"claim:{event_id}"):
            return True
        needle = event_id.encode()
        for queue in ("router", "celery"):
            if any(needle in raw or needle in body_of(raw) for raw in client.lrange(queue, 0, -1)):
                return True
        return any(needle in raw or needle in body_of(raw) for raw in client.hvals("unacked"))


def until_sent(send: Callable[[], Any], timeout: float = 30.0) -> None:
    """Send, again every 0.5 s while Redis refuses it (still full from the burst), for up to `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            send()
            return
        except Exception:  # noqa: BLE001 - full or down: try again until the deadline
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def body_of(raw: bytes) -> bytes:
    try:
        data = json.loads(raw)
        payload = data[0] if isinstance(data, list) else data
        return base64.b64decode(payload.get("body", ""))
    except (ValueError, TypeError, AttributeError):
        return b""


def run_case(case: str, rounds: int, events: int, rate: float, hang_after: float, root: Path,
             models_dir: Path | None = None, extra_env: dict[str, str] | None = None,
             keep_logs: Path | None = None) -> dict[str, Any]:
    """Start a drill for `case`, run its rounds, stop it; the per-round counts and their totals."""
    root.mkdir(parents=True, exist_ok=True)
    env = {"SCENE_MODELS": "", "METRICS_PORT_BASE": "0", "SWEEP_INTERVAL_SECONDS": "5", "RESCUE_INTERVAL_SECONDS": "2",
           "EVENT_DEADLINE_SECONDS": "300", "MODEL_TIME_LIMIT": "30", "MODEL_SOFT_TIME_LIMIT": "20",
           # one key for every start of the pool, as compose requires: a pool restarted with a key of its own refuses
           # the internal messages its predecessor left queued (the group-term and launcher-term cases restart it)
           "POOL_SIGNING_KEY": secrets.token_hex(32)}
    env |= ({"DEVICE_QUEUES": "cpu.0,cpu.1"} if case in ("host-kill", "second-host") else {})
    if models_dir is None:
        env |= noop_environment(root)
        models_dir = root / "noop"
    env |= extra_env or {}
    drill = Drill(case, root, models_dir, env)
    results = []
    started = time.monotonic()
    try:
        drill.start()
        for number in range(1, rounds + 1):
            if case == "host-kill" and (drill.host2 is None or drill.host2.poll() is not None):
                drill.start_host2()
                time.sleep(2)
            result = drill.round(number, events, rate, hang_after)
            results.append(result)
            print(f"[{case}] round {number}: " + ", ".join(f"{k} {v}" for k, v in result.items()
                                                          if k not in ("round", "lost_ids") and v), flush=True)
    finally:
        drill.stop()
        if keep_logs is not None and any(r["lost"] or r["hung"] for r in results):
            import shutil

            shutil.copytree(root, keep_logs / f"{case}-{int(time.time())}", dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("noop", "*.aof", "appendonly*"))
    totals = {key: sum(r.get(key, 0) for r in results) for key in
              ("sent", "refused", "stored", "complete", "partial", "lost", "hung", "announced_twice", "unexplained",
               "after_sent", "after_complete")}
    recover = [r["recover_seconds"] for r in results if r["recover_seconds"] is not None]
    totals["recover_seconds_max"] = max(recover) if recover else None
    totals["rounds"] = len(results)
    return {"case": case, "rounds": results, "totals": totals, "wall_seconds": round(time.monotonic() - started, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="all", help=f"one of {', '.join(CASES)}, or all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=120)
    parser.add_argument("--rate", type=float, default=40.0, help="events sent per second")
    parser.add_argument("--hang-after", type=float, default=180.0, help="seconds after the fault to count as hung")
    parser.add_argument("--models-dir", type=Path, default=None, help="real or tiny weights instead of no-op models")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep-logs", type=Path, default=REPO / "var" / "faults" / "logs",
                        help="where the pool's logs of a case that lost or hung an event are kept")
    args = parser.parse_args()
    cases = CASES if args.case == "all" else (args.case,)
    if any(case not in CASES for case in cases):
        parser.error(f"--case takes one of {', '.join(CASES)}, or all")
    report = {"command": " ".join(sys.argv), "cases": []}
    with tempfile.TemporaryDirectory(prefix="fault-drill-") as tmp:
        for case in cases:
            report["cases"].append(run_case(case, args.rounds, args.events, args.rate, args.hang_after,
                                            Path(tmp) / case, args.models_dir, keep_logs=args.keep_logs))
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(report, indent=2))
    print("\ncase            rounds  sent  refused  stored  complete  partial  lost  hung  twice  recover max s")
    bad = False
    for entry in report["cases"]:
        t = entry["totals"]
        print(f"{entry['case']:<15} {t['rounds']:>6} {t['sent']:>5} {t['refused']:>8} {t['stored']:>7} "
              f"{t['complete']:>9} {t['partial']:>8} {t['lost']:>5} {t['hung']:>5} {t['announced_twice']:>6} "
              f"{t['recover_seconds_max'] if t['recover_seconds_max'] is not None else '-':>14}")
        bad |= bool(t["lost"] or t["hung"] or t["announced_twice"] or t["unexplained"]
                    or t["after_complete"] < t["after_sent"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
