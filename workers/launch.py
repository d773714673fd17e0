"""How the pool's workers are started: one CPU worker for router/assemble, one pinned worker per device."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

from workers.settings import Settings

log = logging.getLogger(__name__)

# "celery" is Celery's default queue: a backend's own app that sends enrich_detection by name, with no routes,
# sends it there.
ROUTER_QUEUES = "router,assemble,celery"


@dataclass(frozen=True)
class DeviceSlot:
    """One device worker: its queue, its node name, and the CUDA_VISIBLE_DEVICES that pins it."""

    kind: str  # "gpu" or "cpu"
    index: int
    visible: str | None = None  # CUDA_VISIBLE_DEVICES when not the index: a container given one GPU sees it as 0

    @property
    def queue(self) -> str:
        return f"{self.kind}.{self.index}"

    @property
    def node(self) -> str:
        return f"{self.kind}{self.index}@%h"

    def environment(self) -> dict[str, str]:
        env = {"WORKER_ROLE": "device", "DEVICE_QUEUE": self.queue}
        if self.kind == "gpu":
            env["CUDA_VISIBLE_DEVICES"] = self.visible if self.visible is not None else str(self.index)
        else:
            env["CUDA_VISIBLE_DEVICES"] = ""
            env["DEVICE"] = "cpu"
        return env


def pool_name(settings: Settings) -> str:
    """This pool on this host, for folder names: its Redis as host-port-db (no password), e.g. 127.0.0.1-6379-0."""
    parts = urlsplit(settings.redis_url)
    try:
        name = f"{parts.hostname}-{parts.port or 6379}-{(parts.path or '/0').strip('/') or '0'}"
    except ValueError:
        name = ""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", name):
        name = "redis-" + hashlib.sha256(f"{parts.hostname}{parts.path}".encode()).hexdigest()[:12]
    return name


def port_taken(port: int, addr: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((addr, port))
        except OSError:
            return True
        return False


def metrics_environment(settings: Settings, name: str, offset: int, single: bool = False) -> dict[str, str]:
    """Each worker serves /metrics, /healthz and /readyz on METRICS_PORT_BASE + offset, from its own fresh
    multiprocess directory. A worker started on its own (`python -m workers router|device`, single=True) keeps a
    METRICS_PORT given to it instead: compose names each service's port, so its healthcheck and Prometheus know it.

    The directory is METRICS_DIR/<pool>/<worker>: a second pool on the host (another Redis, say the demo beside a
    running pool) gets its own folder and never clears this one's files. A port already taken is reported here,
    and the worker runs on without those endpoints (workers.health.serve says so too).
    """
    base = settings.metrics.port_base
    pinned = settings.metrics.port if single else None
    if base is None and pinned is None:
        return {}
    directory = settings.metrics.dir / pool_name(settings) / name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    port = pinned if pinned is not None else base + offset
    if port_taken(port, settings.metrics.addr):
        message = (f"metrics port {settings.metrics.addr}:{port} for {name} is taken (another pool on this host?); "
                   f"this worker will serve no /metrics: set METRICS_PORT_BASE to a free range, or 0 for none")
        log.warning(message)
    return {"METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(directory)}


def detect_gpus(settings: Settings) -> list[int]:
    """GPU indices from nvidia-smi (never from torch: the launcher must not initialise CUDA)."""
    if settings.launch.cuda_visible_devices == "" or not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [int(line) for line in out.split() if line.strip().isdigit()]


def device_slots(gpus: str, cpu_workers: int = 1, settings: Settings | None = None) -> list[DeviceSlot]:
    """'auto': every GPU nvidia-smi lists, else CPU slots; 'none': CPU slots only; '0,2': those GPUs.

    CPU slots are cpu.0 .. cpu.<cpu_workers - 1>: several CPU workers stand in for several GPUs
    (placement, affinity and the per-worker memory share behave as they would across devices).
    """
    if cpu_workers < 1:
        raise ValueError(f"--cpu-workers must be at least 1, not {cpu_workers}")
    cpu = [DeviceSlot("cpu", index) for index in range(cpu_workers)]
    if gpus == "none":
        return cpu
    if gpus == "auto":
        found = detect_gpus(settings or Settings())
        return [DeviceSlot("gpu", i) for i in found] or cpu
    try:
        return [DeviceSlot("gpu", int(part)) for part in gpus.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--gpus takes auto, none or a comma list of indices, not {gpus!r}") from None


def celery_worker_command(settings: Settings, queues: str, node: str, concurrency: int, loglevel: str,
                          extra: list[str], pool: str = "prefork") -> list[str]:
    """`celery -A tasks worker` for these queues; -E (task events, which Flower needs) unless TASK_EVENTS=0."""
    return [
        sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", queues, "-n", node, "-c", str(concurrency),
        "-P", pool, "--loglevel", loglevel, *(["-E"] if settings.task_events else []), *extra,
    ]


def router_command(settings: Settings, loglevel: str, concurrency: int = 2,
                   single: bool = False) -> tuple[list[str], dict[str, str]]:
    """The CPU worker for the router and assemble queues (the sweeper's schedule runs in its own beat process;
    single: started on its own, see metrics_environment)."""
    extra = ["--max-memory-per-child", str(settings.launch.router_max_memory_kb)]
    command = celery_worker_command(settings, ROUTER_QUEUES, "router@%h", concurrency, loglevel, extra)
    return command, {"WORKER_ROLE": "router", "CUDA_VISIBLE_DEVICES": ""} | metrics_environment(settings, "router", 0, single)


def beat_command(settings: Settings, loglevel: str) -> tuple[list[str], dict[str, str]]:
    """Celery beat, its own process: it sends the sweeper and the rescue on their schedules (one per pool; the
    sweeper and the rescue also take a Redis lock, so a second beat never runs them twice at once)."""
    command = [sys.executable, "-m", "celery", "-A", "tasks", "beat", "-s", str(settings.launch.beat_schedule_file),
               "--loglevel", loglevel]
    return command, {"WORKER_ROLE": "beat", "CUDA_VISIBLE_DEVICES": ""}


def stop_grace_seconds(settings: Settings) -> float:
    """How long stopping waits for a worker's warm shutdown before killing it: a model task may run up to
    MODEL_TIME_LIMIT, plus STOP_MARGIN_SECONDS for the rest (compose's stop_grace_period is at least this)."""
    return settings.model_time_limit + STOP_MARGIN_SECONDS


STOP_MARGIN_SECONDS = 30.0


BATCH_WINDOW = 8  # model tasks a threads pool holds, per unit of batch size: room for batch_size events' models
DEFAULT_BATCH_SIZE = 4


@dataclass(frozen=True)
class DevicePool:
    """How a device worker runs its model tasks.

    threads (the default): one process holds the device, a threads pool of `threads` model tasks (default
    BATCH_WINDOW x batch_size) runs an event's models side by side, and each model's requests are served in
    micro-batches of up to `batch_size`; the runtime keeps the time limits (a watchdog ends the process past
    MODEL_TIME_LIMIT, the supervisor restarts it). prefork: one child runs one task at a time, with Celery's
    own time limits; no batching.
    """

    kind: str = "threads"
    batch_size: int = DEFAULT_BATCH_SIZE
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("threads", "prefork"):
            raise ValueError(f"--pool takes threads or prefork, not {self.kind!r}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be at least 1, not {self.threads}")
        if self.kind == "prefork" and (self.batch_size > 1 or self.threads is not None):
            raise ValueError("--pool prefork runs one task at a time: it takes neither --batch-size above 1 nor --threads")

    @classmethod
    def prefork(cls) -> DevicePool:
        return cls("prefork", batch_size=1)

    @property
    def concurrency(self) -> int:
        return 1 if self.kind == "prefork" else self.threads or BATCH_WINDOW * self.batch_size


def device_command(settings: Settings, slot: DeviceSlot, loglevel: str, pool: DevicePool = DevicePool(),
                   single: bool = False) -> tuple[list[str], dict[str, str]]:
    """The worker for one device's queue: a threads pool by default, or prefork with one child (see DevicePool);
    single: started on its own (see metrics_environment).

    Either way the models load lazily in the process that runs the tasks, which owns the device; a prefork
    parent never touches CUDA.
    """
    offset = 1 + slot.index + (100 if slot.kind == "cpu" else 0)
    env = slot.environment() | metrics_environment(settings, slot.queue, offset, single) | {
        "DEVICE_POOL": pool.kind, "MODEL_BATCH_SIZE": str(pool.batch_size),
    }
    command = celery_worker_command(settings, slot.queue, slot.node, pool.concurrency, loglevel, [], pool=pool.kind)
    return command, env
