"""The launcher's worker layout: CPU workers standing in for GPUs, a threads pool with batching by default, prefork on request."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from workers.__main__ import cli
from workers.launch import BATCH_WINDOW, DevicePool, DeviceSlot, device_command, device_slots
from workers.settings import Settings

SETTINGS = Settings(metrics={"port_base": None})


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_several_cpu_workers_get_their_own_queues_and_nodes():
    slots = device_slots("none", 3)
    assert [s.queue for s in slots] == ["cpu.0", "cpu.1", "cpu.2"]
    assert len({s.node for s in slots}) == 3
    assert all(s.environment()["CUDA_VISIBLE_DEVICES"] == "" for s in slots)


@pytest.mark.parametrize("gpus, count", [("none", 0), ("none", -1)])
def test_at_least_one_cpu_worker(gpus, count):
    with pytest.raises(ValueError, match="--cpu-workers"):
        device_slots(gpus, count)


def test_gpu_slots_are_pinned_to_their_device():
    slots = device_slots("0,2")
    assert [(s.queue, s.environment()["CUDA_VISIBLE_DEVICES"]) for s in slots] == [("gpu.0", "0"), ("gpu.2", "2")]


def test_a_device_worker_is_a_threads_pool_with_batching_by_default():
    command, env = device_command(SETTINGS, DeviceSlot("gpu", 1), "info")
    assert option(command, "-P") == "threads" and option(command, "-c") == str(4 * BATCH_WINDOW)
    assert option(command, "-Q") == "gpu.1"
    assert env["DEVICE_POOL"] == "threads" and env["MODEL_BATCH_SIZE"] == "4"


def test_prefork_runs_one_task_at_a_time_without_batching():
    command, env = device_command(SETTINGS, DeviceSlot("cpu", 0), "info", DevicePool.prefork())
    assert option(command, "-P") == "prefork" and option(command, "-c") == "1"
    assert env["DEVICE_POOL"] == "prefork" and env["MODEL_BATCH_SIZE"] == "1"
    with pytest.raises(ValueError, match="prefork"):
        DevicePool("prefork", batch_size=4)


def test_batch_size_sets_the_threads_window():
    command, env = device_command(SETTINGS, DeviceSlot("cpu", 0), "info", DevicePool(batch_size=2))
    assert option(command, "-c") == str(2 * BATCH_WINDOW) and env["MODEL_BATCH_SIZE"] == "2"
    with pytest.raises(ValueError, match="--batch-size"):
        DevicePool(batch_size=0)


def test_task_events_follow_the_setting(monkeypatch):
    assert "-E" in device_command(SETTINGS, DeviceSlot("cpu", 0), "info")[0]
    monkeypatch.setenv("TASK_EVENTS", "0")
    assert "-E" not in device_command(Settings(metrics={"port_base": None}), DeviceSlot("cpu", 0), "info")[0]


def test_slots_command_lists_the_cpu_workers():
    result = CliRunner().invoke(cli, ["slots", "--gpus", "none", "--cpu-workers", "2"])
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[0] for line in result.output.splitlines()] == ["cpu.0", "cpu.1"]


def test_bad_batch_size_is_a_usage_error():
    result = CliRunner().invoke(cli, ["start", "--gpus", "none", "--batch-size", "0"])
    assert result.exit_code == 2 and "batch-size" in result.output


def test_threads_without_batching_for_measuring():
    command, env = device_command(SETTINGS, DeviceSlot("cpu", 0), "info", DevicePool(batch_size=1, threads=6))
    assert option(command, "-P") == "threads" and option(command, "-c") == "6" and env["MODEL_BATCH_SIZE"] == "1"
    with pytest.raises(ValueError, match="--threads"):
        DevicePool(threads=0)


def test_an_unknown_pool_is_a_usage_error():
    result = CliRunner().invoke(cli, ["start", "--gpus", "none", "--pool", "gevent"])
    assert result.exit_code == 2 and "--pool" in result.output


def test_the_router_worker_reads_celerys_default_queue():
    """A backend's own Celery app sends enrich_detection to "celery" unless it routes it (issue 15, point 3)."""
    from workers.launch import ROUTER_QUEUES

    assert "celery" in ROUTER_QUEUES.split(",")


def test_each_pool_keeps_its_metrics_files_in_its_own_folder(tmp_path):
    """Issue 15, point 10: a second pool on the host never clears the first one's files."""
    from workers.launch import metrics_environment

    first = Settings(redis_url="redis://:secret@127.0.0.1:6379/0", metrics={"dir": tmp_path, "port_base": 19808})
    second = Settings(redis_url="redis://127.0.0.1:6400/0", metrics={"dir": tmp_path, "port_base": 19808})
    mine = Path(metrics_environment(first, "router", 0)["PROMETHEUS_MULTIPROC_DIR"])
    (mine / "counter_1.db").write_bytes(b"x")
    theirs = Path(metrics_environment(second, "router", 0)["PROMETHEUS_MULTIPROC_DIR"])
    assert mine != theirs and (mine / "counter_1.db").exists()
    assert mine.parent.name == "127.0.0.1-6379-0" and "secret" not in str(mine)


def test_a_taken_metrics_port_is_reported_and_the_worker_runs_on(caplog):
    import socket

    from prometheus_client import CollectorRegistry

    from workers.health import serve
    from workers.settings import MetricsSettings

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve(MetricsSettings(port=port), CollectorRegistry(), "router@test", {}) is None
    assert "is taken" in caplog.text and str(port) in caplog.text


# -- the supervisor (issue 27 point 5, issue 28 points 2-4) ----------------------------------------------------------
def supervised(tmp_path, *commands: str, **settings):
    import sys

    from workers.__main__ import Supervisor

    specs = [([sys.executable, "-c", code, "-n", f"w{n}@%h"], {"WORKER_ROLE": "device"})
             for n, code in enumerate(commands)]
    return Supervisor(specs, Settings(metrics={"port_base": None}, **settings), run_dir=tmp_path)


def wait_exit(worker) -> None:
    worker.process.wait(timeout=30)


def test_a_worker_that_keeps_exiting_is_restarted_with_growing_pauses(tmp_path, capsys):
    supervisor = supervised(tmp_path, "raise SystemExit(3)", launch={"restart_backoff_max_seconds": 4})
    (worker,) = supervisor.workers
    delays = []
    now = 1000.0
    for _ in range(5):
        supervisor.launch(worker)
        worker.started_at = now
        wait_exit(worker)
        now += 1.0
        supervisor.exited(worker, now)
        delays.append(worker.next_start - now)
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert "restarting it in 2.0 s (3 exit(s) in a row)" in capsys.readouterr().out
    supervisor.launch(worker)
    worker.started_at = now
    wait_exit(worker)
    supervisor.exited(worker, now + supervisor.STABLE_SECONDS)
    assert worker.next_start == now + supervisor.STABLE_SECONDS, "a worker that ran a while starts again at once"


def test_a_dead_workers_children_are_killed(tmp_path, capsys):
    import time as clock

    from workers.__main__ import group_members

    code = "import subprocess, sys; subprocess.Popen(['sleep', '60']); sys.exit(1)"
    supervisor = supervised(tmp_path, code)
    (worker,) = supervisor.workers
    supervisor.launch(worker)
    wait_exit(worker)
    group = worker.process.pid
    clock.sleep(0.3)
    assert group_members(group), "the dead worker's child still runs, in the worker's own process group"
    supervisor.exited(worker, clock.monotonic())
    assert "left 1 process(es) running" in capsys.readouterr().out
    deadline = clock.monotonic() + 10
    while group_members(group) and clock.monotonic() < deadline:
        clock.sleep(0.1)
    assert not group_members(group)


def test_stopping_waits_model_time_limit_plus_a_margin_then_kills_and_says_what(tmp_path, capsys):
    from workers.launch import stop_grace_seconds

    assert stop_grace_seconds(Settings(model_time_limit=90)) == 120
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    polite = "import time; time.sleep(60)"
    supervisor = supervised(tmp_path, stubborn, polite)
    for worker in supervisor.workers:
        supervisor.launch(worker)
    import time as clock

    clock.sleep(0.5)
    supervisor.stop()
    started = clock.monotonic()
    supervisor.wait(2.0)
    assert clock.monotonic() - started < 10
    out = capsys.readouterr().out
    assert "worker w0@%h did not stop within 2 s: killed 1 process(es)" in out
    assert "worker w1@%h stopped (exit code -15)" in out
    assert all(w.process.poll() is not None for w in supervisor.workers)


def test_a_worker_that_stops_consuming_is_killed_only_while_redis_answers(tmp_path, capsys):
    supervisor = supervised(tmp_path, "import time; time.sleep(60)", launch={"worker_stall_seconds": 5})
    (worker,) = supervisor.workers
    supervisor.launch(worker)
    now = worker.started_at
    supervisor.redis_answers = lambda: False
    supervisor.restart_stalled(now + 30)
    assert worker.process.poll() is None, "Redis is down: the worker waits for it, it is not stuck"
    supervisor.redis_answers = lambda: True
    supervisor.restart_stalled(now + 31)
    assert worker.process.poll() is None, "Redis has just come back: the worker gets its time to reconnect"
    worker.alive_file.touch()
    supervisor.restart_stalled(now + 40)
    assert worker.process.poll() is None, "it showed it consumes"
    import os
    import time as clock

    stale = clock.time() - 30
    os.utime(worker.alive_file, (stale, stale))
    worker.started_at -= 100  # started long ago, Redis up all along, last sign 30 s ago
    supervisor.redis_up_since = worker.started_at
    supervisor.restart_stalled(clock.monotonic())
    worker.process.wait(timeout=10)
    assert "has not consumed for" in capsys.readouterr().out


def test_start_runs_beat_as_its_own_process_with_the_router(monkeypatch):
    import workers.__main__ as launcher

    started = []
    monkeypatch.setattr(launcher.Supervisor, "run", lambda self: started.append([w.name for w in self.workers]))
    assert CliRunner().invoke(cli, ["start", "--gpus", "none"], env={"METRICS_PORT_BASE": "0"}).exit_code == 0
    assert CliRunner().invoke(cli, ["start", "--gpus", "none", "--no-router"],
                              env={"METRICS_PORT_BASE": "0"}).exit_code == 0
    assert started == [["router@%h", "beat", "cpu0@%h"], ["cpu0@%h"]]
