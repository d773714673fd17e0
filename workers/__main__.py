"""`python -m workers`: start the whole pool on this host, or one worker of it (for docker-compose)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field, replace

import typer

from workers.launch import DEFAULT_BATCH_SIZE, DevicePool, device_command, device_slots, router_command
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
                   "elsewhere need the same key: set POOL_SIGNING_KEY)")


def exec_worker(command: list[str], env: dict[str, str]) -> None:
    """Become the worker: its environment is ours plus what the launcher decided for it."""
    os.execve(command[0], command, os.environ | env)


def device_pool(pool: str, batch_size: int | None, threads: int | None) -> DevicePool:
    """The pool the options ask for (batch size defaults by pool: 4 for threads, 1 for prefork)."""
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE if pool == "threads" else 1
    return DevicePool(pool, batch_size=batch_size, threads=threads)


@cli.command()
def router(loglevel: str = "info", concurrency: int = 2, beat: bool = True) -> None:
    """Run the router/assemble worker in the foreground (one per deployment when --beat is on)."""
    settings = Settings()
    require_signing_key(settings)
    exec_worker(*router_command(settings, loglevel, concurrency, beat, single=True))


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
class Supervisor:
    """Runs worker processes and starts again any that exits (a crash, or the watchdog ending a stuck one)."""

    specs: list[tuple[list[str], dict[str, str]]]
    processes: list[subprocess.Popen] = field(default_factory=list)
    stopping: bool = False

    def launch(self, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        typer.echo(f"starting {' '.join(command)}  [{' '.join(f'{k}={v}' for k, v in env.items())}]")
        return subprocess.Popen(command, env=os.environ | env)

    def stop(self, *_: object) -> None:
        self.stopping = True
        for process in self.processes:
            if process.poll() is None:
                process.terminate()

    def run(self) -> None:
        self.processes = [self.launch(command, env) for command, env in self.specs]
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        while not self.stopping:
            time.sleep(0.5)
            self.restart_exited()
        self.wait(30)

    def restart_exited(self) -> None:
        for index, process in enumerate(self.processes):
            if process.poll() is not None and not self.stopping:
                command = self.specs[index][0]
                node = command[command.index("-n") + 1]
                typer.echo(f"worker {node} exited with code {process.returncode}; restarting it")
                self.processes[index] = self.launch(*self.specs[index])

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()


@cli.command()
def start(gpus: str = typer.Option("auto", help="auto, none (CPU only), or GPU indices like 0,1"),
          loglevel: str = "info", router_worker: bool = typer.Option(True, "--router/--no-router"),
          cpu_workers: int = typer.Option(1, help="CPU device workers (cpu.0 .. cpu.N-1) when there is no GPU"),
          pool: str = typer.Option("threads", help=POOL_HELP),
          batch_size: int | None = typer.Option(None, help=BATCH_HELP),
          threads: int | None = typer.Option(None, help=THREADS_HELP)) -> None:
    """Start the router worker and one device worker per GPU (or CPU workers); restart any that exits; stop all on Ctrl-C."""
    settings = Settings()
    try:
        chosen = device_pool(pool, batch_size, threads)
        devices = [device_command(settings, s, loglevel, chosen) for s in device_slots(gpus, cpu_workers, settings)]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    share_signing_key(settings)
    Supervisor(([router_command(settings, loglevel)] if router_worker else []) + devices).run()


@cli.command("slots")
def show_slots(gpus: str = "auto", cpu_workers: int = 1) -> None:
    """Print the device workers `start` would launch."""
    for slot in device_slots(gpus, cpu_workers, Settings()):
        typer.echo(f"{slot.queue}\t{slot.node}\t{slot.environment()}")


if __name__ == "__main__":
    cli()
