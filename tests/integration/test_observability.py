"""What an operator sees: `celery inspect loaded_models` and each worker's Prometheus /metrics."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scripts.fixtures.sample_events import person_event, vehicle_event

pytestmark = pytest.mark.integration


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }


def total(samples: dict, name: str, **labels) -> float:
    return sum(v for (n, lbls), v in samples.items() if n == name and set(labels.items()) <= set(lbls))


def test_loaded_models_reports_the_device_workers_cache(pool):
    pool.client.enrich(vehicle_event("obs-vehicle"), timeout=300)
    replies = pool.client.loaded_models(timeout=3)
    device = next(state for worker, state in replies.items() if worker.startswith("cpu0@"))
    names = {m["name"] for m in device["models"]}
    assert {"vehicle", "depth"} <= names
    assert device["used_bytes"] <= device["budget_bytes"]
    assert device["stats"]["loads"] >= 2
    router = next(state for worker, state in replies.items() if worker.startswith("router@"))
    assert router["models"] == []


def test_celery_inspect_command_prints_each_workers_models(pool):
    pool.client.enrich(vehicle_event("obs-cli"), timeout=300)
    output = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tasks", "inspect", "loaded_models", "--timeout", "3"],
        env=os.environ | {"REDIS_URL": pool.redis_url}, capture_output=True, text=True, timeout=60,
    ).stdout
    assert "cpu0@" in output and "router@" in output
    assert "vehicle" in output and "depth" in output


def unshared(event: dict) -> dict:
    """The event with its frame re-encoded: bytes no other event sent, so no scene model's result is shared with
    an earlier event on the same frame (issue 24's once-per-frame), and every planned model runs here."""
    from PIL import Image

    from scripts.fixtures.sample_events import b64

    buffer = io.BytesIO()
    Image.open(io.BytesIO(base64.b64decode(event["image"]))).save(buffer, format="JPEG", quality=88)
    return event | {"image": b64(buffer.getvalue())}


def test_metrics_move_as_events_are_processed(pool):
    base = int(pool.extra_env["METRICS_PORT_BASE"])
    router_port, device_port = base, base + 101
    before_router, before_device = scrape(router_port), scrape(device_port)
    result = pool.client.enrich(unshared(person_event("obs-metrics")), timeout=300)
    time.sleep(0.5)
    after_router, after_device = scrape(router_port), scrape(device_port)
    status = result["status"]
    assert status == "complete", result["errors"]
    assert total(after_router, "model_zoo_events_total", status=status) == \
        total(before_router, "model_zoo_events_total", status=status) + 1
    assert total(after_router, "model_zoo_chord_assembly_seconds_count") == \
        total(before_router, "model_zoo_chord_assembly_seconds_count") + 1
    for model in result["models"]:
        assert total(after_device, "model_zoo_inference_seconds_count", model=model) > \
            total(before_device, "model_zoo_inference_seconds_count", model=model)
    requests = sum(total(after_device, name) for name in ("model_zoo_cache_hits_total", "model_zoo_cache_misses_total"))
    requests_before = sum(total(before_device, name) for name in ("model_zoo_cache_hits_total", "model_zoo_cache_misses_total"))
    assert requests - requests_before == len(result["models"])
    assert total(after_device, "model_zoo_model_loads_total") >= 1
    assert 0 < total(after_device, "model_zoo_memory_used_bytes") <= total(after_device, "model_zoo_memory_share_bytes")
