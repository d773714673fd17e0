"""`python -m workers`: start the whole pool on this host, or one worker of it (for docker-compose)."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import typer

from workers.launch import (
    DEFAULT_BATCH_SIZE,
    DevicePool,
    beat_command,
    device_command,
    device_slots,
    router_command,
    stop_grace_seconds,
)
from workers.settings import Settings

POOL_HELP = ("threads: an event's models run side by side in one process, with micro-batching and a watchdog for "
             "the hard time limit (default); prefork: one child runs one task at a time")
BATCH_HELP = "Micro-batching (threads pool): up to N queued requests for one model run as one batch; 1 turns it off"
THREADS_HELP = "Size of a device worker's threads pool (default 8 x batch size)"

cli = typer.Typer(add_completion=False, help="Start Model Zoo workers.")


NO_KEY = ("POOL_SIGNING_KEY is not set: the pool's internal messages could not be signed, and its workers would "
          "refuse them. Generate one (python -c 'import secrets; print(secrets.token_hex(32))') and give every "
          "worker of the pool the same")


def require_signing_key(settings: Settings) -> None:
    """A single worker (router, device) never starts without the pool's key: it could not tell its messages apart."""
    if settings.pool_signing_key is None:
        typer.echo(NO_KEY, err=True)
        raise typer.Exit(2)


def share_signing_key(settings: Settings) -> None:
    """`start` runs every worker of the pool on this host: without a configured key it makes one for them (in the
    environment they inherit, never on a command line or in the launch log)."""
    if settings.pool_signing_key is None:
        os.environ.update(POOL_SIGNING_KEY=secrets.token_hex(32))
        typer.echo("POOL_SIGNING_KEY unset: generated one for the workers this launcher starts (workers started "
                   "elsewhere need the same key, and a restart makes another one, with which the pool refuses the "
                   "internal messages it left queued: set POOL_SIGNING_KEY)")


def exec_worker(command: list[str], env: dict[str, str]) -> None:
    """Become the worker: its environment is ours plus what the launcher decided for it."""
    os.execve(command[0], command, os.environ | env)


def device_pool(pool: str, batch_size: int | None, threads: int | None) -> DevicePool:
    """The pool the options ask for (batch size defaults by pool: 4 for threads, 1 for prefork)."""
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE if pool == "threads" else 1
    return DevicePool(pool, batch_size=batch_size, threads=threads)


@cli.command()
def router(loglevel: str = "info", concurrency: int = 2) -> None:
    """Run the router/assemble worker in the foreground (one per pool; the schedule runs in `beat`)."""
    settings = Settings()
    require_signing_key(settings)
    exec_worker(*router_command(settings, loglevel, concurrency, single=True))


@cli.command()
def beat(loglevel: str = "info") -> None:
    """Run Celery beat in the foreground: the sweeper's and the rescue's schedule (one per pool; it sends signed
    tasks to the internal assemble queue, so it needs the pool's key)."""
    settings = Settings()
    require_signing_key(settings)
    exec_worker(*beat_command(settings, loglevel))


@cli.command()
def device(index: int = 0, cpu: bool = typer.Option(False, help="A CPU worker (queue cpu.`index`) instead of GPU `index`"),
           visible: str | None = typer.Option(
               None, "--visible-device",
               help="CUDA index of this GPU as the worker sees it (0 in a container given only this GPU); "
                    "default VISIBLE_DEVICE_INDEX"),
           pool: str = typer.Option("threads", help=POOL_HELP),
           batch_size: int | None = typer.Option(None, help=BATCH_HELP),
           threads: int | None = typer.Option(None, help=THREADS_HELP),
           loglevel: str = "info") -> None:
    """Run one device worker in the foreground on queue gpu.`index`, pinned to that GPU (or the CPU)."""
    settings = Settings()
    require_signing_key(settings)
    visible = visible if visible is not None else settings.launch.visible_device_index
    try:
        if cpu:
            slot = device_slots("none", index + 1, settings)[index]
        else:
            slot = replace(device_slots(str(index), settings=settings)[0], visible=visible)
        command = device_command(settings, slot, loglevel, device_pool(pool, batch_size, threads), single=True)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    exec_worker(*command)


@dataclass
class Worker:
    """One supervised process: its command, the process now running it, and how its recent starts went."""

    name: str
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0  # exits in a row, each after less than STABLE_SECONDS
    next_start: float = 0.0

    @property
    def alive_file(self) -> Path | None:
        path = self.env.get("WORKER_ALIVE_FILE")
        return Path(path) if path else None


def worker_name(command: list[str], env: dict[str, str]) -> str:
    return command[command.index("-n") + 1] if "-n" in command else env.get("WORKER_ROLE", command[-1])


def group_members(pgid: int) -> list[int]:
    """The pids still in a process group (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
            except OSError:
                continue
    return members


def kill_group(pgid: int) -> list[int]:
    """SIGKILL whatever is left of a process group; the pids it held."""
    members = group_members(pgid)
    if members:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    return members


@dataclass
class Supervisor:
    """Runs worker processes, each in its own process group, and keeps them running.

    A worker that exits is started again after a pause that doubles with each exit in a row (0.5 s, 1 s, 2 s ... up
    to RESTART_BACKOFF_MAX_SECONDS; a worker that ran STABLE_SECONDS starts again at once), and whatever its
    process group still holds (prefork children, a beat) is killed first, so a dead worker leaves nothing running.
    A worker whose alive file (tasks/liveness.py) goes stale for WORKER_STALL_SECONDS while Redis answers is
    killed and started again. Stopping (SIGTERM or SIGINT to the launcher) asks every worker for a warm shutdown
    and waits up to MODEL_TIME_LIMIT + STOP_MARGIN_SECONDS, then kills what is left, and says what it killed.
    """

    specs: list[tuple[list[str], dict[str, str]]]
    settings: Settings = field(default_factory=Settings)
    run_dir: Path | None = None
    workers: list[Worker] = field(default_factory=list)
    stopping: bool = False
    redis_up_since: float | None = None

    STABLE_SECONDS = 60.0
    FIRST_DELAY = 0.5
    POLL_SECONDS = 0.5

    def __post_init__(self) -> None:
        if self.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="model-zoo-alive-"))
        for command, env in self.specs:
            name = worker_name(command, env)
            alive = self.run_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.alive"
            self.workers.append(Worker(name, command, env | {"WORKER_ALIVE_FILE": str(alive)}))

    @property
    def processes(self) -> list[subprocess.Popen]:
        return [w.process for w in self.workers if w.process is not None]

    def launch(self, worker: Worker) -> None:
        env = worker.env
        typer.echo(f"starting {' '.join(worker.command)}  [{' '.join(f'{k}={v}' for k, v in env.items())}]")
        if worker.alive_file is not None:
            worker.alive_file.unlink(missing_ok=True)
        worker.process = subprocess.Popen(worker.command, env=os.environ | env, start_new_session=True)
        worker.started_at = time.monotonic()

    def stop(self, *_: object) -> None:
        """Ask each worker for a warm shutdown (SIGTERM to the worker alone: its pool children finish their task)."""
        self.stopping = True
        for process in self.processes:
            if process.poll() is None:
                process.terminate()

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for worker in self.workers:
            self.launch(worker)
        while not self.stopping:
            time.sleep(self.POLL_SECONDS)
            self.restart_exited()
            self.restart_stalled()
        self.wait(stop_grace_seconds(self.settings))

    def restart_exited(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for worker in self.workers:
            process = worker.process
            if self.stopping:
                return
            if process is not None and process.poll() is not None:
                self.exited(worker, now)
            if worker.process is None and now >= worker.next_start:
                self.launch(worker)

    def exited(self, worker: Worker, now: float) -> None:
        """Note a worker's exit, kill what its group left behind, and schedule its restart with backoff."""
        process = worker.process
        ran = now - worker.started_at
        leftovers = kill_group(process.pid)
        if leftovers:
            typer.echo(f"worker {worker.name} left {len(leftovers)} process(es) running "
                       f"({', '.join(map(str, leftovers))}): killed them")
        worker.failures = 0 if ran >= self.STABLE_SECONDS else worker.failures + 1
        delay = 0.0 if worker.failures == 0 else min(self.FIRST_DELAY * 2 ** (worker.failures - 1),
                                                      self.settings.launch.restart_backoff_max_seconds)
        typer.echo(f"worker {worker.name} exited with code {process.returncode} after {ran:.1f} s; "
                   + (f"restarting it in {delay:.1f} s ({worker.failures} exit(s) in a row)" if delay
                      else "restarting it"))
        worker.process = None
        worker.next_start = now + delay

    def redis_answers(self) -> bool:
        import redis

        try:
            client = redis.Redis.from_url(self.settings.broker_url, socket_connect_timeout=2, socket_timeout=2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False

    def restart_stalled(self, now: float | None = None) -> None:
        """Kill (then restart, through restart_exited) a worker that has not shown it consumes for
        WORKER_STALL_SECONDS while Redis answers: counted from its start, its last sign, or Redis coming back."""
        now = time.monotonic() if now is None else now
        limit = self.settings.launch.worker_stall_seconds
        candidates = [w for w in self.workers if w.alive_file is not None and w.process is not None
                      and w.process.poll() is None and w.env.get("WORKER_ROLE") != "beat"]
        if not candidates:
            return
        if not self.redis_answers():
            self.redis_up_since = None
            return
        if self.redis_up_since is None:
            self.redis_up_since = now
        wall_to_monotonic = time.time() - now
        for worker in candidates:
            try:
                last_sign = worker.alive_file.stat().st_mtime - wall_to_monotonic
            except OSError:
                last_sign = worker.started_at
            quiet = now - max(last_sign, worker.started_at, self.redis_up_since)
            if quiet > limit:
                typer.echo(f"worker {worker.name} has not consumed for {quiet:.0f} s while Redis answers: "
                           f"killing it (pids {', '.join(map(str, group_members(worker.process.pid)))}) to restart it")
                kill_group(worker.process.pid)

    def wait(self, seconds: float) -> None:
        """Wait up to `seconds` for the warm shutdowns; kill what is left of each worker's group and say so."""
        deadline = time.monotonic() + seconds
        typer.echo(f"stopping: waiting up to {seconds:.0f} s for the workers' running tasks")
        for worker in self.workers:
            process = worker.process
            if process is None:
                continue
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed = kill_group(process.pid)
                process.wait()
                typer.echo(f"worker {worker.name} did not stop within {seconds:.0f} s: killed "
                           f"{len(killed)} process(es) ({', '.join(map(str, killed))}); its unacknowledged tasks "
                           f"are put back when it starts again")
                continue
            leftovers = kill_group(process.pid)
            if leftovers:
                typer.echo(f"worker {worker.name} stopped but left {len(leftovers)} process(es): killed "
                           f"{', '.join(map(str, leftovers))}")
            else:
                typer.echo(f"worker {worker.name} stopped (exit code {process.returncode})")


@cli.command()
def start(gpus: str = typer.Option("auto", help="auto, none (CPU only), or GPU indices like 0,1"),
          loglevel: str = "info", router_worker: bool = typer.Option(True, "--router/--no-router"),
          beat: bool | None = typer.Option(
              None, "--beat/--no-beat", help="Run Celery beat (the sweeper's and the rescue's schedule); default: "
                                             "with the router"),
          cpu_workers: int = typer.Option(1, help="CPU device workers (cpu.0 .. cpu.N-1) when there is no GPU"),
          pool: str = typer.Option("threads", help=POOL_HELP),
          batch_size: int | None = typer.Option(None, help=BATCH_HELP),
          threads: int | None = typer.Option(None, help=THREADS_HELP)) -> None:
    """Start the router worker, beat, and one device worker per GPU (or CPU workers); restart any that exits or
    stops consuming, with backoff; stop all on Ctrl-C or SIGTERM, waiting MODEL_TIME_LIMIT + 30 s for running tasks."""
    settings = Settings()
    try:
        chosen = device_pool(pool, batch_size, threads)
        devices = [device_command(settings, s, loglevel, chosen) for s in device_slots(gpus, cpu_workers, settings)]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    share_signing_key(settings)
    central = [router_command(settings, loglevel)] if router_worker else []
    if beat if beat is not None else router_worker:
        central.append(beat_command(settings, loglevel))
    Supervisor(central + devices, settings).run()


@cli.command("slots")
def show_slots(gpus: str = "auto", cpu_workers: int = 1) -> None:
    """Print the device workers `start` would launch."""
    for slot in device_slots(gpus, cpu_workers, Settings()):
        typer.echo(f"{slot.queue}\t{slot.node}\t{slot.environment()}")


if __name__ == "__main__":
    cli()
