"""A worker's HTTP face: /metrics, /healthz, /readyz and their checks (broker, start-up), the queue depths, the
single-worker metrics port, and `python -m workers.health` as a healthcheck."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest
import redis
from prometheus_client import CollectorRegistry, Counter

from tasks.local_pool import free_port
from workers.health import broker_check, device_start_check, probe, serve
from workers.metrics import QueueDepthCollector
from workers.settings import MetricsSettings, Settings
from workers.state import WORKER_STATE_PREFIX


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def served():
    """serve(checks) on a free port: the port, and the dict of checks to change per test."""
    registry = CollectorRegistry()
    Counter("probe_total", "a counter of this test's registry", registry=registry).inc()
    checks: dict = {}
    port = serve(MetricsSettings(port=free_port()), registry, "cpu0@test", checks)
    assert port is not None
    return port, checks


def test_metrics_liveness_and_readiness_share_the_port(served):
    port, _ = served
    status, text = get(port, "/metrics")
    assert status == 200 and "probe_total 1.0" in text
    status, body = get(port, "/healthz")
    assert status == 200 and json.loads(body) == {"worker": "cpu0@test", "alive": True}


def test_readyz_reports_every_check_and_fails_on_any():
    checks = {"broker": lambda: None, "models": lambda: "starting: warming up", "broken": lambda: 1 / 0}
    port = serve(MetricsSettings(port=free_port()), CollectorRegistry(), "cpu0@test", checks)
    status, body = get(port, "/readyz")
    reply = json.loads(body)
    assert status == 503 and reply["ready"] is False
    assert reply["checks"] == {"broker": "ok", "models": "starting: warming up",
                               "broken": "ZeroDivisionError: division by zero"}


def test_broker_check_passes_on_a_live_redis_and_names_a_dead_one(redis_server):
    assert broker_check(redis_server.client())() is None
    dead = redis.Redis(port=free_port(), socket_connect_timeout=1, socket_timeout=1)
    assert broker_check(dead)().startswith("broker unreachable: ")


def test_device_is_ready_once_its_published_state_says_start_up_is_done(redis_client):
    check = device_start_check(redis_client, "cpu0@test")
    assert "no state published for cpu0@test" in check()
    redis_client.set(WORKER_STATE_PREFIX + "cpu0@test", json.dumps({"ready": False, "start_up": "preloading pose"}))
    assert check() == "starting: preloading pose"
    redis_client.set(WORKER_STATE_PREFIX + "cpu0@test", json.dumps({"ready": True, "start_up": "done"}))
    assert check() is None


def test_a_runtime_is_ready_after_warm_up_and_preload(pool_models_dir, redis_client):
    from workers.frames import DecodedFrames
    from workers.runtime import DeviceRuntime

    settings = Settings(models_dir=pool_models_dir, device="cpu", memory_share_mb=1024, preload_models=["pet"])
    runtime = DeviceRuntime(settings, DecodedFrames(None, settings.max_image_pixels), "cpu0@ready", redis_client)
    check = device_start_check(redis_client, "cpu0@ready")
    try:
        runtime.start()
        assert runtime.services.ready.is_set() is False
        runtime.services.start()
        assert runtime.services.ready.wait(120)
        assert check() is None
        assert "pet" in [m["name"] for m in runtime.cache.snapshot()["models"]]
    finally:
        runtime.stop()


def test_queue_depth_counts_every_priority_of_a_queue(redis_client):
    redis_client.lpush("gpu.0", "a", "b")
    redis_client.lpush("gpu.0\x06\x163", "c")  # kombu's list for priority 3 messages
    redis_client.lpush("router", "d")
    collector = QueueDepthCollector(lambda: redis_client, lambda: ["gpu.0", "router", "assemble", "gpu.0"])
    registry = CollectorRegistry()
    registry.register(collector)
    depths = {s.labels["queue"]: s.value for s in registry.collect().__next__().samples}
    assert depths == {"gpu.0": 3, "router": 1, "assemble": 0}


def test_queue_depth_is_absent_rather_than_wrong_when_redis_is_down():
    dead = redis.Redis(port=free_port(), socket_connect_timeout=1, socket_timeout=1)
    assert list(QueueDepthCollector(lambda: dead, lambda: ["router"]).collect()) == []


def test_the_healthcheck_command_exits_by_readiness():
    ready = {"models": lambda: None}
    port = serve(MetricsSettings(port=free_port()), CollectorRegistry(), "cpu0@test", ready)
    env = os.environ | {"METRICS_PORT": str(port)}
    ok = subprocess.run([sys.executable, "-m", "workers.health"], env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and json.loads(ok.stdout)["ready"] is True
    ready["models"] = lambda: "starting: warming up"
    failing = subprocess.run([sys.executable, "-m", "workers.health"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert failing.returncode == 1 and "warming up" in failing.stdout
    live = subprocess.run([sys.executable, "-m", "workers.health", "--live"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert live.returncode == 0
    nobody = subprocess.run([sys.executable, "-m", "workers.health"], env=env | {"METRICS_PORT": str(free_port())},
                            capture_output=True, text=True, timeout=60)
    assert nobody.returncode == 1 and "no answer on 127.0.0.1" in nobody.stdout


def test_probe_says_why_nothing_answered():
    ok, why = probe(free_port(), "/readyz", timeout=1)
    assert not ok and "no answer" in why


def test_a_worker_started_on_its_own_keeps_the_port_it_was_given(tmp_path, monkeypatch):
    from workers.launch import DeviceSlot, device_command, router_command

    monkeypatch.setenv("METRICS_DIR", str(tmp_path))
    monkeypatch.setenv("METRICS_PORT", "9809")
    settings = Settings()
    _, alone = device_command(settings, DeviceSlot("gpu", 3), "info", single=True)
    assert alone["METRICS_PORT"] == "9809"
    _, in_a_pool = device_command(settings, DeviceSlot("gpu", 3), "info")  # `start`: base + 1 + index
    assert in_a_pool["METRICS_PORT"] == str(settings.metrics.port_base + 4)
    _, router = router_command(settings, "info", single=True)
    assert router["METRICS_PORT"] == "9809"
