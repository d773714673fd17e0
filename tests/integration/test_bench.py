"""scripts/bench.py end to end on no-op models: the harness runs both sides and its figures hang together."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_bench_noop_report(tmp_path):
    report_path = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--noop", "--events", "6", "--batch-size", "2",
         "--no-affinity", "--no-compare", "--report", str(report_path)],
        cwd=REPO, capture_output=True, text=True, timeout=280,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["models"] == "noop" and report["events"] == 6
    assert report["direct"]["events"] == 6 and report["direct"]["events_per_s"] > 0
    for name in ("pool", "pool_no_events"):
        run_report = report[name]
        assert run_report["cache"]["statuses"]["complete"] == 6, (name, run_report["cache"])
        assert run_report["concurrent"]["events"] == 6
    sequential = report["pool"]["sequential"]
    assert 0 < sequential["one_task_round_trip_ms"]["p50"] <= sequential["latency_ms"]["p50"]
    # Frames by reference: the one device worker reads each frame byte once, whatever the number of models.
    assert report["pool"]["redis"]["models_per_event"] > 3
    assert report["pool"]["redis"]["worker_frame_reads_per_frame_byte"] == pytest.approx(1.0, abs=0.01)
    # The frame is carried once: inline through the pool's client (it uploads the frame) and by image_key, each
    # extra frame byte costs Redis one byte in; a stock Celery sender's inline frame costs several.
    paths = report["pool"]["redis_bytes"]["paths"]
    for path in ("client_inline", "by_image_key"):
        assert paths[path]["in_per_extra_frame_byte"] == pytest.approx(1.0, abs=0.1), (path, paths[path])
    assert paths["plain_celery_inline"]["in_per_extra_frame_byte"] > 3, paths["plain_celery_inline"]
    assert report["pool"]["redis_plain_celery"]["in_per_frame_byte"] > report["pool"]["redis"]["in_per_frame_byte"]
    assert report["pool"]["pool"] == "threads"
    assert report["pool"]["batching"] and report["pool"]["batching"][0]["batched_requests"] >= 6
    assert report["summary"]["failed_phases"] == []
    assert "pool_over_direct_throughput" in report["summary"]
    assert "events/s" in run.stdout
    figure = report_path.with_suffix(".png")
    assert f"figure: {figure}" in run.stdout and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_celery_floor_report(tmp_path):
    """scripts/celery_floor.py: the same hops with none of the pool's code, figures for every process."""
    report_path = tmp_path / "floor.json"
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "celery_floor.py"), "--events", "12", "--models", "3",
         "--concurrency", "4", "--report", str(report_path)],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["events"] == 12 and report["model_tasks_per_event"] == 3
    assert 0 < report["latency_ms_p50"] <= report["latency_ms_p90"]
    assert report["events_per_second"] > 0
    assert set(report["cpu_ms_per_event"]) == {"router-like (prefork, 2 children)", "device-like (threads)",
                                               "redis-server"}
    assert report["cpu_ms_per_event_total"] > 0 and report["cpu_ms_per_event_in_flight_total"] > 0
