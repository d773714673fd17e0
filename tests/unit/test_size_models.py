"""scripts/size_models.py on the CPU with tiny weights: each model in a fresh process, every stage reported, JSON
written, a killed model keeps what it reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "size_models.py"


def size(tmp_path: Path, models_dir: Path, *args: str) -> dict:
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--models-dir", str(models_dir), "--loads", "3",
         "--infers", "2", "--json", str(report), *args],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(report.read_text())


def test_sizes_each_model_through_the_runtime_and_cache(tmp_path, pool_models_dir):
    report = size(tmp_path, pool_models_dir, "--only", "pet", "--only", "action")
    assert report["device"] == "cpu" and report["full_size"] is False
    pet = report["models"]["pet"]
    assert {"ready", "warm_up", "first_load", "loads", "first_infer", "infer", "batch", "done"} <= pet.keys()
    assert len(pet["loads"]["load_ms"]) == 3 and pet["loads"]["after_first"]["n"] == 2
    first = pet["first_load"]
    assert first["measured_bytes"] == first["disk_estimate_bytes"]  # a CPU measures the float32 tensors on disk
    assert first["registry_mb"] == 22
    assert pet["infer"]["infer"]["n"] == 2 and pet["batch"]["batch_size"] == 4
    assert "batch" not in report["models"]["action"]  # X-CLIP does not batch


def test_generates_missing_weights_and_bounds_a_model_in_time(tmp_path):
    models_dir = tmp_path / "models"
    report = size(tmp_path, models_dir, "--only", "reid", "--model-seconds", "1")
    assert (models_dir / "reid" / ".complete").exists()
    reid = report["models"]["reid"]
    assert "killed after 1 s" in reid["error"] and "done" not in reid
