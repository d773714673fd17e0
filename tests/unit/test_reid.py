"""OSNet re-ID: weight-file discovery, checkpoint unwrapping, and unit-length 512-d embeddings from tiny weights."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from scripts.fixtures.weights.reid import WEIGHTS_FILE
from workers.models.base import ModelInput
from workers.models.osnet_family import build_osnet, preprocess, unwrap_state_dict, weights_file
from workers.models.reid import EMBEDDING_DIM, ReidModel


def person(colour: tuple[int, int, int]) -> ModelInput:
    frame = Image.new("RGB", (200, 300), (90, 90, 90))
    frame.paste(colour, (60, 40, 140, 280))
    return ModelInput(frame, (60.0, 40.0, 140.0, 280.0))


@pytest.fixture(scope="module")
def reid(tiny_model):
    model = ReidModel(tiny_model("reid"), "cpu")
    model.load()
    yield model
    model.unload()


def test_embedding_is_512_unit_length_floats(reid):
    result = reid.infer(person((200, 30, 30)))
    assert set(result) == {"embedding", "dim"}
    assert result["dim"] == EMBEDDING_DIM == len(result["embedding"])
    assert all(isinstance(x, float) for x in result["embedding"])
    assert math.sqrt(sum(x * x for x in result["embedding"])) == pytest.approx(1.0, abs=2e-3)
    assert json.loads(json.dumps(result)) == result


def test_same_crop_gives_same_embedding_and_other_crops_differ(reid):
    red = reid.infer(person((200, 30, 30)))["embedding"]
    assert reid.infer(person((200, 30, 30)))["embedding"] == red
    assert reid.infer(person((30, 30, 200)))["embedding"] != red


def test_embedding_is_taken_from_the_person_box(reid):
    inputs = person((30, 200, 30))
    assert reid.infer(inputs)["embedding"] == reid.embed(inputs.person_crop())


def test_preprocess_resizes_to_256_by_128_and_normalises():
    tensor = preprocess(Image.new("RGB", (40, 90), (124, 116, 104)))  # about the ImageNet mean
    assert tuple(tensor.shape) == (1, 3, 256, 128)
    assert float(tensor.abs().max()) < 0.05


def test_weights_file_accepts_a_file_or_a_directory_with_one_weight_file(tmp_path):
    (tmp_path / "osnet_x0_25_imagenet.pth").write_bytes(b"")
    (tmp_path / "README.md").write_text("weights\n")
    assert weights_file(tmp_path) == tmp_path / "osnet_x0_25_imagenet.pth"
    assert weights_file(tmp_path / "osnet_x0_25_imagenet.pth") == tmp_path / "osnet_x0_25_imagenet.pth"
    (tmp_path / "other.pth.tar").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="exactly one"):
        weights_file(tmp_path)
    with pytest.raises(FileNotFoundError):
        weights_file(tmp_path / "missing")


def test_unwrap_strips_state_dict_wrapper_and_module_prefix():
    checkpoint = {"state_dict": {"module.conv1.conv.weight": 1, "fc.0.bias": 2}, "epoch": 60}
    assert unwrap_state_dict(checkpoint) == {"conv1.conv.weight": 1, "fc.0.bias": 2}


def test_loads_wrapped_dataparallel_checkpoint_with_a_1000_class_head(tmp_path, tiny_model, reid):
    """A torchreid training checkpoint: {"state_dict": ...}, "module." keys, an ImageNet-sized classifier."""
    import torch

    state = torch.load(tiny_model("reid") / WEIGHTS_FILE, weights_only=True)
    state["classifier.weight"] = torch.zeros(1000, EMBEDDING_DIM)
    state["classifier.bias"] = torch.zeros(1000)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 150}, tmp_path / "ckpt.pth.tar")
    wrapped = ReidModel(tmp_path, "cpu")
    wrapped.load()
    inputs = person((120, 40, 160))
    assert wrapped.infer(inputs) == reid.infer(inputs)


def test_other_architectures_weights_are_refused(tmp_path):
    import torch

    state = build_osnet().state_dict()
    state["conv1.conv.weight"] = torch.zeros(8, 3, 7, 7)  # a wider stem than x0.25 has
    del state["fc.0.bias"]
    torch.save(state, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="not osnet_x0_25 weights"):
        ReidModel(tmp_path, "cpu").load()
