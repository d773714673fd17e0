"""Loading fast: modules built without random init, open_clip and OSNet read straight into the network, prompt text
features cached, float16 on a GPU per kind, and library imports ahead of the first load."""

from __future__ import annotations

import shutil

import pytest
import torch
from PIL import Image

from workers.models import open_clip_family
from workers.models.base import ModelInput, skip_random_init
from workers.models.clothing import ClothingModel
from workers.models.hf_family import HuggingFaceFamily
from workers.models.open_clip_family import OpenClipFamily, checkpoint_file
from workers.models.osnet_family import (
    OsnetFamily,
    build_osnet,
    match_state_dict,
    preprocess,
    unwrap_state_dict,
    weights_file,
)
from workers.models.reid import ReidModel
from workers.models.yolo_family import UltralyticsFamily
from workers.registry import REGISTRY

PERSON = ModelInput(Image.new("RGB", (200, 300), (90, 90, 90)), (40.0, 30.0, 160.0, 290.0))


def test_skip_random_init_skips_torch_init_functions_and_restores_them(monkeypatch):
    from torch.nn.modules import activation

    calls: list[str] = []

    def spy(name, original):
        return lambda tensor, *a, **k: calls.append(name) or original(tensor, *a, **k)

    monkeypatch.setattr(torch.nn.init, "kaiming_uniform_", spy("kaiming", torch.nn.init.kaiming_uniform_))
    monkeypatch.setattr(activation, "xavier_uniform_", spy("xavier", activation.xavier_uniform_))
    with skip_random_init():
        torch.nn.Linear(8, 8)
        torch.nn.MultiheadAttention(8, 2)  # its own imported copy of xavier_uniform_
    assert calls == []
    torch.nn.Linear(8, 8)
    torch.nn.MultiheadAttention(8, 2)
    assert "kaiming" in calls and "xavier" in calls


def test_open_clip_loads_the_same_network_open_clip_builds(tiny_model):
    import open_clip

    directory = tiny_model("clothing")
    ours = ClothingModel(directory, "cpu")
    ours.load()
    theirs, _, transform = open_clip.create_model_and_transforms(f"local-dir:{directory}", image_resize_mode="longest")
    theirs.eval()
    reference = theirs.state_dict()
    assert ours.model.state_dict().keys() == reference.keys()
    assert all(torch.equal(ours.model.state_dict()[k], reference[k]) for k in reference)  # buffers included
    image = PERSON.person_crop()
    with torch.inference_mode():
        expected = theirs.encode_image(transform(image).unsqueeze(0)).float()
    expected = expected / expected.norm(dim=-1, keepdim=True)
    assert torch.allclose(ours.encode_images([image]), expected, atol=1e-6)


def test_osnet_loads_the_same_network_torchreid_builds(tiny_model):
    directory = tiny_model("reid")
    ours = ReidModel(directory, "cpu")
    ours.load()
    theirs = build_osnet()
    checkpoint = torch.load(weights_file(directory), map_location="cpu", weights_only=True)
    theirs.load_state_dict(match_state_dict(theirs.state_dict(), unwrap_state_dict(checkpoint)), strict=False)
    theirs.eval()
    with torch.inference_mode():
        expected = theirs(preprocess(PERSON.person_crop()))
    expected = expected / expected.norm(dim=-1, keepdim=True)
    assert torch.allclose(ours.features([PERSON.person_crop()]), expected, atol=1e-6)
    assert all(torch.isfinite(t.float()).all() for t in ours.model.state_dict().values())  # the unused head too


@pytest.fixture
def clothing_copy(tiny_model, tmp_path, monkeypatch):
    """A private copy of the tiny clothing model, an empty per-process cache and a private temp folder."""
    directory = tmp_path / "clothing"
    shutil.copytree(tiny_model("clothing"), directory, ignore=shutil.ignore_patterns(".text-features"))
    monkeypatch.setattr(open_clip_family, "_text_features", {})
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return directory


def count_text_encodings(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = OpenClipFamily.encode_texts
    monkeypatch.setattr(OpenClipFamily, "encode_texts", lambda self, texts: calls.append(len(texts)) or original(self, texts))
    return calls


def test_prompt_features_are_encoded_once_then_cached_in_process_and_on_disk(clothing_copy, monkeypatch):
    calls = count_text_encodings(monkeypatch)
    first = ClothingModel(clothing_copy, "cpu")
    first.load()
    assert len(calls) == 1
    cached = list((clothing_copy / ".text-features").glob("*.safetensors"))
    assert len(cached) == 1

    first.unload()
    first.load()  # a reload in this process
    monkeypatch.setattr(open_clip_family, "_text_features", {})
    fresh = ClothingModel(clothing_copy, "cpu")
    fresh.load()  # as if in a new process: read from disk
    assert len(calls) == 1
    for category, embeddings in fresh.text_embeddings.items():
        assert torch.allclose(embeddings, first.text_embeddings[category])


def test_another_prompt_table_is_encoded_again(clothing_copy, tmp_path, monkeypatch):
    calls = count_text_encodings(monkeypatch)
    bundled = ClothingModel(clothing_copy, "cpu")
    bundled.load()
    table = tmp_path / "prompts.toml"
    table.write_text('templates = ["a photo of {}"]\n[categories]\nupper = ["a red coat", "a hoodie"]\n')
    monkeypatch.setenv("CLOTHING_PROMPTS_FILE", str(table))
    from workers.settings import ZooSettings

    other = ClothingModel(clothing_copy, "cpu", ZooSettings())
    other.load()
    assert calls == [len(bundled.prompts.texts()), 2]
    assert set(other.text_embeddings) == {"upper"}


def test_read_only_model_folder_caches_prompt_features_in_the_temp_folder(clothing_copy, tmp_path, monkeypatch):
    monkeypatch.setattr(open_clip_family, "TEXT_FEATURES_DIR", "missing/.text-features")
    (clothing_copy / "missing").write_text("a file where the folder would go: not writable as a folder")
    ClothingModel(clothing_copy, "cpu").load()
    assert list((tmp_path / "tmp" / "model-zoo-text-features").glob("*.safetensors"))


def test_damaged_cache_file_is_recomputed(clothing_copy, monkeypatch):
    ClothingModel(clothing_copy, "cpu").load()
    (cached,) = (clothing_copy / ".text-features").glob("*.safetensors")
    cached.write_bytes(b"not a safetensors file")
    monkeypatch.setattr(open_clip_family, "_text_features", {})
    calls = count_text_encodings(monkeypatch)
    ClothingModel(clothing_copy, "cpu").load()
    assert len(calls) == 1


@pytest.mark.parametrize("family, cuda_bytes", [(HuggingFaceFamily, 2), (OpenClipFamily, 2), (UltralyticsFamily, 2),
                                                (OsnetFamily, 4)])
def test_float16_on_a_gpu_float32_on_a_cpu_per_kind(family, cuda_bytes):
    assert family.bytes_per_float("cuda") == family.bytes_per_float("cuda:1") == cuda_bytes
    assert family.bytes_per_float("cpu") == 4


def test_every_registry_family_runs_in_half_on_a_gpu_but_reid_and_face():
    halves = {name: entry.load_class().bytes_per_float("cuda") == 2 for name, entry in REGISTRY.items()}
    # face: FaceNet's embeddings are compared across enrolment and events; it stays float32 (92 MB) for now
    assert [name for name, half in halves.items() if not half] == ["reid", "face"]


@pytest.mark.parametrize("name", list(REGISTRY))
def test_import_libraries_reads_files_only_and_then_loading_works(tiny_model, name):
    path = tiny_model(name)
    family = REGISTRY[name].load_class()
    family.import_libraries(path)
    model = family(path, "cpu")
    model.load()
    assert model.loaded
    model.unload()


def test_open_clip_checkpoint_choice_follows_open_clip(tmp_path):
    for name in ("b.bin", "a.pth", "z.safetensors"):
        (tmp_path / name).write_bytes(b"x")
    assert checkpoint_file(tmp_path).name == "z.safetensors"
    (tmp_path / "open_clip_pytorch_model.bin").write_bytes(b"x")
    assert checkpoint_file(tmp_path).name == "open_clip_pytorch_model.bin"
