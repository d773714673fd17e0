"""Preload and unload on command in real device workers: prefork (the parent hands the command to the child through
Redis) and a threads pool (the command runs where the cache is); PRELOAD_MODELS at start; the CLI around them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasks.cli import app
from tasks.local_pool import stop_process_group

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


class DeviceWorker:
    """One `celery -A tasks worker` consuming cpu.0 as a device worker, its log in a file."""

    def __init__(self, redis_url: str, models_dir: Path, log: Path, pool: str, node: str, hook: bool,
                 preload: str = ""):
        self.redis_url, self.node, self.log = redis_url, node, log
        command = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "cpu.0", "-n", node, "-P", pool,
                   "-c", "1" if pool == "prefork" else "4", "--loglevel", "info",
                   *(["-I", "tests.model_services_hook"] if hook else [])]
        env = os.environ | {
            "REDIS_URL": redis_url, "MODELS_DIR": str(models_dir), "WORKER_ROLE": "device", "DEVICE_QUEUE": "cpu.0",
            "DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": "", "HEARTBEAT_SECONDS": "1", "METRICS_PORT_BASE": "",
            "PRELOAD_MODELS": preload, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "YOLO_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def wait_ready(self, client, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            if client.app.control.ping(destination=[self.node], timeout=1.0):
                return
        raise AssertionError(f"{self.node} never answered ping:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_process_group(self.process)


def published(redis_server, node: str) -> dict:
    raw = redis_server.client().get(f"workers:state:{node}")
    return json.loads(raw) if raw else {}


def wait_for_models(redis_server, node: str, names: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        state = published(redis_server, node)
        if names <= {m["name"] for m in state.get("models", [])}:
            return state
        time.sleep(0.3)
    raise AssertionError(f"{names} never published by {node}: {state}")


def cli(redis_server, *args: str):
    result = runner.invoke(app, ["--redis-url", redis_server.url, *args])
    return result


@pytest.fixture
def client(redis_server):
    from tasks.client import EnrichmentClient

    redis_server.client().flushall()
    made = EnrichmentClient(redis_server.url)
    yield made
    made.close()


def test_prefork_worker_preloads_at_start_and_loads_and_unloads_on_command(redis_server, pool_models_dir, client,
                                                                         tmp_path, monkeypatch):
    monkeypatch.setenv("HEARTBEAT_SECONDS", "1")
    node = "cpu0@prefork-commands"
    worker = DeviceWorker(redis_server.url, pool_models_dir, tmp_path / "worker.log", "prefork", node, hook=True,
                          preload="pet")
    try:
        worker.wait_ready(client)
        state = wait_for_models(redis_server, node, {"pet"})  # PRELOAD_MODELS, loaded by the child at start
        pet = next(m for m in state["models"] if m["name"] == "pet")
        assert pet["measured_bytes"] > 0 and pet["estimated_bytes"] > 0

        loaded = cli(redis_server, "preload", "reid", "pet", "--json", "--timeout", "120")
        assert loaded.exit_code == 0, loaded.output
        statuses = {r["model"]: r["status"] for r in json.loads(loaded.output)[node]["results"]}
        assert statuses == {"reid": "loaded", "pet": "already loaded"}

        shown = cli(redis_server, "models", "--json")
        assert shown.exit_code == 0, shown.output
        state = json.loads(shown.output)[node]
        assert {"pet", "reid"} <= {m["name"] for m in state["models"]} and state["unmeasured"] == []
        assert state["measured_bytes"] == sum(m["measured_bytes"] for m in state["models"])

        inspected = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "tasks", "inspect", "loaded_models", "--json", "--timeout", "5",
             "-d", node], env=os.environ | {"REDIS_URL": redis_server.url}, capture_output=True, text=True, timeout=60,
        )
        models = {m["name"]: m for m in json.loads(inspected.stdout)[node]["models"]}
        assert {"pet", "reid"} <= models.keys()
        assert all(m["estimated_bytes"] and m["measured_bytes"] for m in models.values())

        unloaded = cli(redis_server, "unload", "reid", "--json")
        assert unloaded.exit_code == 0, unloaded.output
        assert json.loads(unloaded.output)[node]["results"][0]["status"] == "unloaded"
        assert "reid" not in {m["name"] for m in wait_for_models(redis_server, node, {"pet"})["models"]}

        refused = cli(redis_server, "preload", "nonsense")
        assert refused.exit_code == 1 and "unknown model" in refused.output
    finally:
        worker.stop()


def test_threads_pool_runs_the_commands_in_the_process_holding_the_cache(redis_server, pool_models_dir, client,
                                                                       tmp_path):
    node = "cpu0@threads-commands"
    worker = DeviceWorker(redis_server.url, pool_models_dir, tmp_path / "worker.log", "threads", node, hook=False)
    try:
        worker.wait_ready(client)
        answer = client.app.control.broadcast("preload_models", arguments={"models": ["pose"]}, destination=[node],
                                              reply=True, timeout=30)
        assert answer[0][node]["via"] == "in process"
        wait_for_models(redis_server, node, {"pose"})

        result = cli(redis_server, "unload", "pose", "--worker", node, "--json")
        assert result.exit_code == 0, result.output
        (outcome,) = json.loads(result.output)[node]["results"]
        assert outcome["status"] == "unloaded" and outcome["freed_bytes"] > 0
    finally:
        worker.stop()


def test_cli_says_when_no_device_worker_runs(redis_server, client):
    result = cli(redis_server, "preload", "pet")
    assert result.exit_code == 1 and "no device worker" in result.output
