"""A pool on this machine: a loopback redis-server and `python -m workers start`, for the demo, bench and tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from tasks.client import EnrichmentClient
from workers.redis_urls import with_password


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One redis-server process; `persistent=True` turns on the append-only file (for restart tests)."""

    def __init__(self, port: int | None = None, persistent: bool = False, password: str | None = None,
                 extra_args: list[str] | None = None):
        self.port = port or free_port()
        self.password = password
        self.extra_args = list(extra_args or [])  # e.g. a TLS port beside the plain one
        self.persistent = persistent
        self.dir = Path(tempfile.mkdtemp(prefix="mz-redis-"))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return with_password(f"redis://127.0.0.1:{self.port}/0", self.password)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--appendonly", "yes" if self.persistent else "no", "--daemonize", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


REPO = Path(__file__).resolve().parents[1]


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds `pid` has used so far (Linux /proc); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_process_group(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM a process started with start_new_session (the launcher, which stops its workers); after `timeout`,
    SIGKILL it and every process below it (the launcher gives each worker a process group of its own)."""
    if process.poll() is not None:
        return
    below = descendants(process.pid)
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        below += descendants(process.pid)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for pid in below:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class LocalPool:
    """Starts the launcher (router worker + device workers) against a given Redis; logs go to files."""

    def __init__(self, redis_url: str, models_dir: Path, log_dir: Path, env: dict[str, str] | None = None,
                 gpus: str = "none", cpu_workers: int = 1, pool: str = "threads", batch_size: int | None = None,
                 threads: int | None = None, client_uploads: bool = False):
        self.redis_url = redis_url
        self.models_dir = models_dir
        self.log_dir = log_dir
        self.extra_env = env or {}
        self.gpus = gpus
        self.cpu_workers = cpu_workers
        self.pool = pool
        self.batch_size = batch_size
        self.threads = threads
        # The tests' client sends inline frames inline (so they exercise the pool's own inline path); the bench's
        # uploads them, as a backend's client does by default.
        self.client_uploads = client_uploads
        self.process: subprocess.Popen | None = None
        self.client: EnrichmentClient | None = None

    @property
    def log_path(self) -> Path:
        return self.log_dir / "pool.log"

    def environment(self) -> dict[str, str]:
        return os.environ | {
            "REDIS_URL": self.redis_url, "MODELS_DIR": str(self.models_dir), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "YOLO_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
            "HEARTBEAT_SECONDS": "1", "BEAT_SCHEDULE_FILE": str(self.log_dir / "beat-schedule"),
        } | self.extra_env

    def start(self, expected_workers: int = 2, timeout: float = 120) -> LocalPool:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workers", "start", "--gpus", self.gpus, "--loglevel", "info",
             "--cpu-workers", str(self.cpu_workers), "--pool", self.pool,
             *(["--batch-size", str(self.batch_size)] if self.batch_size else []),
             *(["--threads", str(self.threads)] if self.threads else [])],
            cwd=REPO, env=self.environment(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.client = EnrichmentClient(self.redis_url, upload_frames=self.client_uploads)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pool exited early:\n{self.log_tail()}")
            replies = self.client.app.control.ping(timeout=1.0) or []
            if len(replies) >= expected_workers:
                return self
        raise RuntimeError(f"workers did not answer ping within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 80) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.client:
            self.client.close()
        if self.process:
            stop_process_group(self.process)
