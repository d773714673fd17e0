"""`python -m workers`: start the whole pool on this host, or one worker of it (for docker-compose)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import replace

import typer

from workers.launch import device_command, device_slots, router_command
from workers.settings import Settings

BATCH_HELP = ("Micro-batching: up to N concurrent requests for one model run as one batch "
              "(a threads pool holding 8N model tasks; no time limits there). 1 = off: prefork with one child")

THREADS_HELP = "Size of a device worker's threads pool (default 8 x batch size); with batch size 1, threads without batching"

cli = typer.Typer(add_completion=False, help="Start Model Zoo workers.")


def exec_worker(command: list[str], env: dict[str, str]) -> None:
    """Become the worker: its environment is ours plus what the launcher decided for it."""
    os.execve(command[0], command, os.environ | env)


@cli.command()
def router(loglevel: str = "info", concurrency: int = 2, beat: bool = True) -> None:
    """Run the router/assemble worker in the foreground (one per deployment when --beat is on)."""
    exec_worker(*router_command(Settings(), loglevel, concurrency, beat))


@cli.command()
def device(index: int = 0, cpu: bool = typer.Option(False, help="A CPU worker (queue cpu.`index`) instead of GPU `index`"),
           visible: str | None = typer.Option(
               None, "--visible-device",
               help="CUDA index of this GPU as the worker sees it (0 in a container given only this GPU); "
                    "default VISIBLE_DEVICE_INDEX"),
           batch_size: int = typer.Option(1, help=BATCH_HELP),
           threads: int | None = typer.Option(None, help=THREADS_HELP),
           loglevel: str = "info") -> None:
    """Run one device worker in the foreground on queue gpu.`index`, pinned to that GPU (or the CPU)."""
    settings = Settings()
    visible = visible if visible is not None else settings.launch.visible_device_index
    try:
        if cpu:
            slot = device_slots("none", index + 1, settings)[index]
        else:
            slot = replace(device_slots(str(index), settings=settings)[0], visible=visible)
        command = device_command(settings, slot, loglevel, batch_size, threads)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    exec_worker(*command)


@cli.command()
def start(gpus: str = typer.Option("auto", help="auto, none (CPU only), or GPU indices like 0,1"),
          loglevel: str = "info", router_worker: bool = typer.Option(True, "--router/--no-router"),
          cpu_workers: int = typer.Option(1, help="CPU device workers (cpu.0 .. cpu.N-1) when there is no GPU"),
          batch_size: int = typer.Option(1, help=BATCH_HELP),
          threads: int | None = typer.Option(None, help=THREADS_HELP)) -> None:
    """Start the router worker and one device worker per GPU (or CPU workers); stop all on Ctrl-C."""
    settings = Settings()
    try:
        slots = device_slots(gpus, cpu_workers, settings)
        devices = [device_command(settings, s, loglevel, batch_size, threads) for s in slots]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    specs = ([router_command(settings, loglevel)] if router_worker else []) + devices
    stopping = False

    def launch(command: list[str], env: dict[str, str]) -> subprocess.Popen:
        typer.echo(f"starting {' '.join(command)}  [{' '.join(f'{k}={v}' for k, v in env.items())}]")
        return subprocess.Popen(command, env=os.environ | env)

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.poll() is None:
                process.terminate()

    processes = [launch(command, env) for command, env in specs]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        time.sleep(0.5)
        for index, process in enumerate(processes):
            if process.poll() is not None and not stopping:
                command = specs[index][0]
                node = command[command.index("-n") + 1]
                typer.echo(f"worker {node} exited with code {process.returncode}; restarting it")
                processes[index] = launch(*specs[index])
    deadline = time.monotonic() + 30
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


@cli.command("slots")
def show_slots(gpus: str = "auto", cpu_workers: int = 1) -> None:
    """Print the device workers `start` would launch."""
    for slot in device_slots(gpus, cpu_workers, Settings()):
        typer.echo(f"{slot.queue}\t{slot.node}\t{slot.environment()}")


if __name__ == "__main__":
    cli()
