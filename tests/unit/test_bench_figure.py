"""scripts/bench.py's figure: the latency distribution of each run measured one event at a time."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def report(**runs) -> dict:
    return {"events": 5, "models": "noop", "seed": 7, **runs}


def test_one_curve_per_run_that_measured_events_one_at_a_time(bench, tmp_path):
    data = report(direct={"latency_by_event_ms": [4.1, 4.5, 5.0, 4.2, 9.0]},
                  pool={"sequential": {"latency_by_event_ms": [20.0, 22.5, 25.0, 21.0, 60.0]}},
                  prefork={"error": "RuntimeError: it failed"},  # a failed phase has no curve
                  unbatched={"concurrent": {"latency_ms": {"p50": 30}}})  # concurrent runs keep percentiles only
    assert bench.latency_runs(data) == {"direct": [4.1, 4.2, 4.5, 5.0, 9.0], "pool": [20.0, 21.0, 22.5, 25.0, 60.0]}
    path = bench.write_figure(data, tmp_path / "report.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (640, 360)
        assert len(set(image.convert("L").getdata())) > 20


def test_no_figure_without_per_event_latencies(bench, tmp_path):
    assert bench.write_figure(report(pool={"error": "x"}), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
