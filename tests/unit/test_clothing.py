"""FashionCLIP clothing wrapper through its real open_clip loader on tiny random weights."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image, ImageDraw

from scripts.fixtures.weights.clothing import write_clothing
from workers.models.base import ModelInput
from workers.models.clothing import ClothingModel, load_prompts
from workers.models.open_clip_family import local_tokenizer
from workers.settings import ZooSettings

PERSON_BOX = (240.0, 90.0, 360.0, 420.0)


@pytest.fixture(scope="module")
def frame() -> Image.Image:
    image = Image.new("RGB", (640, 480), (90, 110, 90))
    draw = ImageDraw.Draw(image)
    draw.rectangle((250, 100, 350, 410), fill=(20, 20, 20))  # a dark figure
    draw.ellipse((280, 95, 320, 140), fill=(200, 170, 150))  # its head
    draw.rectangle((330, 250, 380, 320), fill=(150, 100, 40))  # a parcel
    return image


@pytest.fixture(scope="module")
def model(tiny_model) -> ClothingModel:
    wrapper = ClothingModel(tiny_model("clothing"), "cpu")
    wrapper.load()
    yield wrapper
    wrapper.unload()


def test_every_category_scores_its_prompts(model, frame):
    result = model.infer(ModelInput(frame, PERSON_BOX))
    prompts = load_prompts()

    assert list(result) == list(prompts.categories) == ["suspicious", "delivery", "utility", "carrying", "casual"]
    for category, entry in result.items():
        assert set(entry) == {"top_match", "confidence", "all_scores"}
        assert list(entry["all_scores"]) == list(prompts.categories[category])
        assert math.isclose(sum(entry["all_scores"].values()), 1.0, abs_tol=1e-3)
        assert entry["top_match"] == max(entry["all_scores"], key=entry["all_scores"].get)
        assert entry["confidence"] == entry["all_scores"][entry["top_match"]]
        assert isinstance(entry["confidence"], float) and 0.0 < entry["confidence"] <= 1.0
    assert json.loads(json.dumps(result)) == result


def test_seed_prompt_table_is_complete():
    prompts = load_prompts()
    assert len(prompts.templates) == 5
    assert {name: len(p) for name, p in prompts.categories.items()} == {
        "suspicious": 7, "delivery": 6, "utility": 5, "carrying": 6, "casual": 4,
    }
    assert "person in ski mask or balaclava" in prompts.categories["suspicious"]
    assert "a surveillance camera photo of {}" in prompts.templates


def test_text_embeddings_are_computed_at_load_not_per_inference(model, frame, monkeypatch):
    calls = []
    original = model.model.encode_text
    monkeypatch.setattr(model.model, "encode_text", lambda *a, **k: calls.append(1) or original(*a, **k))

    model.infer(ModelInput(frame, PERSON_BOX))
    model.infer(ModelInput(frame, (0, 0, 640, 480)))

    assert calls == []
    for category, embeddings in model.text_embeddings.items():
        assert embeddings.shape[0] == len(model.prompts.categories[category])
        assert embeddings.norm(dim=-1).sub(1).abs().max() < 1e-5


def test_prompt_embedding_is_the_renormalised_template_average(model):
    import torch

    prompt = model.prompts.categories["casual"][0]
    with torch.inference_mode():
        each = model.model.encode_text(model.tokenizer([t.format(prompt) for t in model.prompts.templates]))
    each = each / each.norm(dim=-1, keepdim=True)
    expected = each.mean(dim=0) / each.mean(dim=0).norm()

    assert torch.allclose(model.text_embeddings["casual"][0], expected, atol=1e-5)


def test_prompts_file_from_the_zoo_settings_replaces_the_table(tiny_model, frame, tmp_path, monkeypatch):
    table = tmp_path / "prompts.toml"
    table.write_text('templates = ["a photo of {}"]\n[categories]\nhat = ["person in a cap", "person bareheaded"]\n')
    monkeypatch.setenv("CLOTHING_PROMPTS_FILE", str(table))  # read by the settings object, not by the family
    assert list(ClothingModel("unused", "cpu").prompts.categories) == ["hat"]
    monkeypatch.delenv("CLOTHING_PROMPTS_FILE")
    wrapper = ClothingModel(tiny_model("clothing"), "cpu", ZooSettings(clothing_prompts_file=table))
    wrapper.load()

    result = wrapper.infer(ModelInput(frame, PERSON_BOX))

    assert list(result) == ["hat"]
    assert list(result["hat"]["all_scores"]) == ["person in a cap", "person bareheaded"]


@pytest.mark.parametrize(
    "text",
    [
        'templates = ["no placeholder"]\n[categories]\na = ["x"]\n',
        'templates = ["{}"]\n[categories]\na = []\n',
        'templates = ["{}"]\n',
    ],
)
def test_malformed_prompt_table_is_rejected(tmp_path, text):
    table = tmp_path / "bad.toml"
    table.write_text(text)
    with pytest.raises(ValueError):
        load_prompts(table)


def test_infer_after_unload_raises_until_loaded_again(tiny_model, frame):
    wrapper = ClothingModel(tiny_model("clothing"), "cpu")
    wrapper.load()
    wrapper.unload()

    with pytest.raises(RuntimeError, match="not loaded"):
        wrapper.infer(ModelInput(frame, PERSON_BOX))
    assert wrapper.text_embeddings is None

    wrapper.load()
    assert set(wrapper.infer(ModelInput(frame, PERSON_BOX))) == set(wrapper.prompts.categories)


def test_directory_without_checkpoint_fails_clearly(tmp_path):
    write_clothing(tmp_path)
    (tmp_path / "open_clip_pytorch_model.bin").unlink()
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        ClothingModel(tmp_path, "cpu").load()


def test_hf_tokenizer_name_without_local_files(tmp_path):
    import open_clip

    clip_vocab = local_tokenizer(tmp_path, {"hf_tokenizer_name": "openai/clip-vit-base-patch32", "vocab_size": 49408})
    assert isinstance(clip_vocab, open_clip.SimpleTokenizer)
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        local_tokenizer(tmp_path, {"hf_tokenizer_name": "timm/ViT-B-16-SigLIP", "vocab_size": 32000})
