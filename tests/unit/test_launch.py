"""The launcher's worker layout: CPU workers standing in for GPUs, prefork by default, threads when batching."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from workers.__main__ import cli
from workers.launch import BATCH_WINDOW, DeviceSlot, device_command, device_slots
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


def test_a_device_worker_is_prefork_with_one_child_by_default():
    command, env = device_command(SETTINGS, DeviceSlot("gpu", 1), "info")
    assert option(command, "-P") == "prefork" and option(command, "-c") == "1"
    assert option(command, "-Q") == "gpu.1" and "MODEL_BATCH_SIZE" not in env


def test_batching_runs_a_threads_pool_with_room_for_each_model():
    command, env = device_command(SETTINGS, DeviceSlot("cpu", 0), "info", batch_size=4)
    assert option(command, "-P") == "threads" and option(command, "-c") == str(4 * BATCH_WINDOW)
    assert env["MODEL_BATCH_SIZE"] == "4" and env["DEVICE_QUEUE"] == "cpu.0"
    with pytest.raises(ValueError, match="--batch-size"):
        device_command(SETTINGS, DeviceSlot("cpu", 0), "info", batch_size=0)


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
    command, env = device_command(SETTINGS, DeviceSlot("cpu", 0), "info", batch_size=1, threads=6)
    assert option(command, "-P") == "threads" and option(command, "-c") == "6" and env["MODEL_BATCH_SIZE"] == "1"
    with pytest.raises(ValueError, match="--threads"):
        device_command(SETTINGS, DeviceSlot("cpu", 0), "info", threads=0)
