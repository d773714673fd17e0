"""The CI-sized fuzz run (issue 15): scripts/fuzz_pool.py, seeded, a few hundred events through its own pool."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz_pool.py"


def test_fuzz_300_events_through_the_pool_lose_nothing(tmp_path, pool_models_dir):
    report_path = tmp_path / "fuzz.json"
    command = [sys.executable, str(SCRIPT), "--events", "300", "--seed", "15", "--timeout", "300",
               "--models-dir", str(pool_models_dir), "--json", str(report_path)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=900)
    print(run.stdout[-3000:])
    report = json.loads(report_path.read_text())
    assert run.returncode == 0 and report["ok"], run.stdout[-3000:] + run.stderr[-3000:]
    assert report["sent"] == report["stored"] == 300
    assert (report["lost"], report["hung"], report["workers_lost"], report["keys_without_ttl"]) == (0, 0, 0, [])
    assert report["replaced"] == 0 and report["enriched"] > 20 and report["rejected"] > 150
    assert report["kinds"].get("oversized message", 0) >= 1
