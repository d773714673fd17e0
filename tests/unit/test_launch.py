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
