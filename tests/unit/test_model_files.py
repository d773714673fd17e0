"""Sizing weights from the files alone: safetensors headers, torch state dicts on the meta device, pickles by size;
each family's estimate against what the cache measures once the model is loaded."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from model_cache.footprint import tensor_bytes
from workers.model_files import WeightsSize, estimated_load_bytes, safetensors_size, torch_checkpoint_size, weights_size
from workers.registry import REGISTRY

STATE = {"w": torch.zeros(10, 20, dtype=torch.float32), "h": torch.zeros(8, dtype=torch.float16),
         "ids": torch.zeros(5, dtype=torch.int64)}


def test_safetensors_header_gives_dtypes_and_shapes(tmp_path):
    save_file(STATE, tmp_path / "model.safetensors")
    size = safetensors_size(tmp_path / "model.safetensors")
    assert size == WeightsSize(float_elements=208, float_bytes=800 + 16, other_bytes=40)
    assert size.loaded_bytes() == 856  # as stored
    assert size.loaded_bytes(2) == 208 * 2 + 40  # floats at float16, integers as stored
    assert size.loaded_bytes(4) == 208 * 4 + 40


def test_torch_state_dict_is_read_on_the_meta_device(tmp_path):
    state = dict(STATE, tied=STATE["w"])  # a tied weight is saved once
    torch.save({"state_dict": state}, tmp_path / "weights.pth")
    assert torch_checkpoint_size(tmp_path / "weights.pth") == WeightsSize(208, 816, 40)


def test_a_pickled_model_is_sized_by_the_file(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"model": torch.nn.Linear(4, 4)}, path)  # weights_only refuses a pickled module
    assert torch_checkpoint_size(path) is None
    nbytes = path.stat().st_size
    assert weights_size(path, stored_bytes_per_float=2).loaded_bytes(4) == nbytes // 2 * 4


def test_no_files_no_estimate():
    assert estimated_load_bytes([], 2) is None


@pytest.mark.parametrize("name", list(REGISTRY))
def test_family_estimate_from_disk_matches_what_the_cache_measures_on_a_cpu(tiny_model, name):
    path = tiny_model(name)
    family = REGISTRY[name].load_class()
    model = family(path, "cpu")
    model.load()
    measured = tensor_bytes(model)
    model.unload()
    estimate = family.estimate_bytes(path, "cpu")
    if name == "clip":  # the checkpoint holds the text tower too; only the image tower is loaded
        assert measured < estimate
    elif name in ("threat", "pose"):  # a pickled checkpoint, sized by its file: within a few percent
        assert estimate == pytest.approx(measured, rel=0.08)
    else:  # exact, but for a few bytes of cached text features
        assert estimate == pytest.approx(measured, rel=0.01, abs=64 * 1024)


@pytest.mark.parametrize("name", [n for n in REGISTRY if n not in ("reid", "face")])  # these two run float32 everywhere
def test_float16_families_are_estimated_at_half_the_bytes_on_a_gpu(tiny_model, name):
    family = REGISTRY[name].load_class()
    path = tiny_model(name)
    assert family.estimate_bytes(path, "cuda") == pytest.approx(family.estimate_bytes(path, "cpu") / 2, rel=0.02)


def test_missing_weights_have_no_estimate(tmp_path):
    for entry in REGISTRY.values():
        assert entry.load_class().estimate_bytes(tmp_path / entry.name, "cpu") is None
