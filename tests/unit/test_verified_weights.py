"""A device worker loads only weights it can vouch for: the registry's pin and the digests recorded at download, the
operator's own (OWN_WEIGHTS), or generated ones; and a gpu.N worker that cannot use its GPU says so and stops."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from workers.frames import DecodedFrames
from workers.model_files import (
    COMPLETE_MARKER,
    WeightsRecord,
    WeightsRefused,
    check_weights,
    file_digests,
    write_record,
)
from workers.registry import REGISTRY, DirectFile
from workers.runtime import DeviceRuntime, GpuUnavailable, pick_device
from workers.settings import Settings

DEPTH = REGISTRY["depth"]
PIN = DEPTH.source.revision


def downloaded(tiny: Path, dest: Path, pin: str = PIN) -> Path:
    """A copy of a tiny model made to look fetched by download_models.py at `pin`: marker and record."""
    shutil.copytree(tiny, dest, ignore=shutil.ignore_patterns(COMPLETE_MARKER))
    (dest / COMPLETE_MARKER).write_text(f"downloaded from {DEPTH.source.url} at {pin}\n")
    write_record(dest, WeightsRecord(DEPTH.source.url, pin, file_digests(dest), "2026-12-04T00:00:00+00:00"))
    return dest


@pytest.fixture
def depth_dir(tiny_model, tmp_path) -> Path:
    return downloaded(tiny_model("depth"), tmp_path / "models" / "depth")


def test_weights_fetched_at_the_pin_with_their_recorded_digests_are_accepted(depth_dir):
    assert check_weights(DEPTH, depth_dir) == f"{DEPTH.source.url} at {PIN}, every file's SHA-256 as recorded"


def test_weights_fetched_at_another_revision_are_refused(tiny_model, tmp_path):
    other = downloaded(tiny_model("depth"), tmp_path / "depth", pin="f" * 40)
    with pytest.raises(WeightsRefused, match=f"at {'f' * 40}, but the registry pins {PIN}: fetch it again"):
        check_weights(DEPTH, other)


def test_a_changed_missing_or_added_file_is_refused(depth_dir):
    (depth_dir / "config.json").write_text("{}")
    with pytest.raises(WeightsRefused, match="changed config.json"):
        check_weights(DEPTH, depth_dir)


def test_a_file_nobody_fetched_is_refused(depth_dir):
    (depth_dir / "extra.safetensors").write_bytes(b"\0" * 8)
    with pytest.raises(WeightsRefused, match="not fetched extra.safetensors"):
        check_weights(DEPTH, depth_dir)


def test_weights_with_no_record_are_refused_naming_both_ways_out(tiny_model, tmp_path):
    by_hand = tmp_path / "depth"
    shutil.copytree(tiny_model("depth"), by_hand, ignore=shutil.ignore_patterns(COMPLETE_MARKER))
    with pytest.raises(WeightsRefused) as refused:
        check_weights(DEPTH, by_hand)
    assert "scripts/download_models.py" in str(refused.value) and "OWN_WEIGHTS=depth" in str(refused.value)
    assert check_weights(DEPTH, by_hand, own=True).startswith("the operator's own weights")


def test_generated_weights_are_accepted_as_what_they_are(tiny_model):
    assert check_weights(DEPTH, tiny_model("depth")).startswith("generated random weights")


def test_a_direct_file_is_held_to_the_registrys_sha256(tiny_model, tmp_path):
    single = tmp_path / "yolov8n-pose.pt"
    shutil.copy(tiny_model("pose") / "yolov8n-pose.pt", single)
    digest = hashlib.sha256(single.read_bytes()).hexdigest()
    pose = REGISTRY["pose"]
    pinned = replace(pose, source=DirectFile(pose.source.url, "yolov8n-pose.pt", sha256=digest))
    assert check_weights(pinned, single) == "yolov8n-pose.pt with the registry's SHA-256"
    wrong = replace(pose, source=DirectFile(pose.source.url, "yolov8n-pose.pt", sha256="0" * 64))
    with pytest.raises(WeightsRefused, match=f"has SHA-256 {digest}, but the registry pins {'0' * 64}"):
        check_weights(wrong, single)


def runtime_for(models_dir: Path, **settings) -> DeviceRuntime:
    built = Settings(models_dir=models_dir, device="cpu", memory_share_mb=2048, **settings)
    return DeviceRuntime(built, DecodedFrames(None, built.max_image_pixels), "cpu0@verify")


def test_a_worker_refuses_to_load_unvouched_weights_and_says_why(tiny_model, tmp_path, monkeypatch):
    shutil.copytree(tiny_model("depth"), tmp_path / "depth", ignore=shutil.ignore_patterns(COMPLETE_MARKER))
    runtime = runtime_for(tmp_path)
    (outcome,) = runtime.services.preload(["depth"])
    assert outcome["status"] == "error" and outcome["detail"].startswith("WeightsRefused: depth: nothing says where")
    monkeypatch.setenv("OWN_WEIGHTS", "pet, depth")
    own = runtime_for(tmp_path)
    assert own.settings.zoo.own_weights == ["pet", "depth"]
    assert own.services.preload(["depth"])[0]["status"] == "loaded"
    own.stop()


def test_a_worker_loads_weights_fetched_at_the_pin(depth_dir):
    runtime = runtime_for(depth_dir.parent)
    assert runtime.services.preload(["depth"])[0]["status"] == "loaded"
    runtime.stop()


def test_another_family_is_not_held_to_the_registrys_pin(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTH_MODEL_FAMILY", "scripts.fixtures.noop:NoopModel")
    runtime = runtime_for(tmp_path)
    assert "its weights are its own affair" in runtime.verify_weights(DEPTH)


def test_a_gpu_worker_that_sees_no_gpu_stops_unless_cpu_fallback_allows_the_cpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    gpu_worker = dict(worker_role="device", device_queue="gpu.1")
    with pytest.raises(GpuUnavailable, match="started for queue gpu.1, but torch .* sees no usable GPU.*CPU_FALLBACK=1"):
        pick_device(Settings(**gpu_worker))
    assert pick_device(Settings(**gpu_worker, cpu_fallback=True)) == "cpu"
    assert pick_device(Settings(worker_role="device", device_queue="cpu.0")) == "cpu"
    assert pick_device(Settings(**gpu_worker, device="cpu")) == "cpu"  # DEVICE=cpu: asked for on purpose
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(Settings(**gpu_worker)) == "cuda"
