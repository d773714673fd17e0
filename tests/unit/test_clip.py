"""CLIP scene-embedding wrapper through its real transformers loader on a tiny random CLIP."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from prompt_formatting import SCENE_TAG_PROMPTS, format_clip_scene_context
from workers.models.base import ModelInput
from workers.models.clip import DEFAULT_LOGIT_SCALE, TAG_TOP_K, ClipModel, rank_tags, unit_vector

PERSON_BOX = (100.0, 40.0, 180.0, 220.0)


@pytest.fixture(scope="module")
def frame() -> Image.Image:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    pixels[40:220, 100:180] = (20, 20, 25)  # a dark figure unlike the noisy background
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def model(tiny_model) -> ClipModel:
    wrapper = ClipModel(tiny_model("clip"), "cpu")
    wrapper.load()
    yield wrapper
    wrapper.unload()


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(v * v for v in vector))


def test_frame_and_crop_embeddings_are_unit_vectors_of_the_projection_width(model, frame):
    result = model.infer(ModelInput(frame, PERSON_BOX))

    assert set(result) == {"frame_embedding", "crop_embedding", "dim", "tags", "weather", "embedding_model"}
    assert result["embedding_model"].startswith("clip:")
    assert result["dim"] == model.model.config.projection_dim
    assert len(result["frame_embedding"]) == len(result["crop_embedding"]) == result["dim"]
    assert norm(result["frame_embedding"]) == pytest.approx(1.0, abs=1e-4)
    assert norm(result["crop_embedding"]) == pytest.approx(1.0, abs=1e-4)
    assert all(isinstance(v, float) for v in result["frame_embedding"])
    assert json.loads(json.dumps(result)) == result


def test_crop_is_embedded_separately_from_the_frame(model, frame):
    result = model.infer(ModelInput(frame, PERSON_BOX))
    assert result["frame_embedding"] != result["crop_embedding"]
    crop_only = model.embed([frame.crop((100, 40, 180, 220))])[0]
    assert crop_only == pytest.approx(result["crop_embedding"], abs=1e-5)


def test_embeddings_are_deterministic(model, frame):
    assert model.embed([frame]) == model.embed([frame])


def test_unit_vector_scales_to_length_one_and_keeps_zero():
    assert unit_vector([3.0, 4.0]) == [0.6, 0.8]
    assert unit_vector([0.0, 0.0]) == [0.0, 0.0]


def test_saved_processor_loads_with_its_tokenizer(tiny_model):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(tiny_model("clip")))
    ids = processor.tokenizer("a person at the door")["input_ids"]
    assert ids[0] == processor.tokenizer.bos_token_id and ids[-1] == processor.tokenizer.eos_token_id
    assert processor.tokenizer.unk_token_id not in ids[1:-1]


def test_infer_before_load_is_an_error(frame):
    with pytest.raises(RuntimeError, match="not loaded"):
        ClipModel("unused", "cpu").infer(ModelInput(frame, PERSON_BOX))


def test_image_tower_reproduces_the_full_clip_model(model, frame, tiny_model):
    """The vision tower loaded alone (text half skipped) carries the checkpoint's own weights."""
    import torch
    from transformers import CLIPModel

    full = CLIPModel.from_pretrained(str(tiny_model("clip"))).eval()
    pixels = model.processor(images=[frame], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        expected = full.get_image_features(pixel_values=pixels).pooler_output[0].tolist()
    assert model.embed([frame])[0] == pytest.approx(unit_vector(expected), abs=1e-5)


def test_scene_tags_are_the_best_prompts_of_the_list_with_softmax_scores(model, frame):
    tags = model.infer(ModelInput(frame, PERSON_BOX))["tags"]
    assert len(tags) == TAG_TOP_K
    assert all(set(tag) == {"label", "score"} and tag["label"] in SCENE_TAG_PROMPTS for tag in tags)
    scores = [tag["score"] for tag in tags]
    assert scores == sorted(scores, reverse=True) and 0.0 < sum(scores) <= 1.0 + 1e-3
    assert len({tag["label"] for tag in tags}) == TAG_TOP_K


def test_scene_tags_score_like_the_full_clip_model(model, frame, tiny_model):
    """Cached tag embeddings and the checkpoint's logit scale give CLIPModel's own zero-shot probabilities."""
    import torch
    from transformers import AutoProcessor, CLIPModel

    path = str(tiny_model("clip"))
    full = CLIPModel.from_pretrained(path).eval()
    batch = AutoProcessor.from_pretrained(path)(
        text=list(SCENE_TAG_PROMPTS), images=[frame], return_tensors="pt", padding=True)
    with torch.inference_mode():
        expected = full(**batch).logits_per_image.softmax(dim=-1)[0].tolist()
    assert model.logit_scale == pytest.approx(float(full.logit_scale.detach().exp()))
    assert model.infer(ModelInput(frame, PERSON_BOX))["tags"] == rank_tags(SCENE_TAG_PROMPTS, expected)


def test_only_the_tag_embeddings_of_the_text_tower_stay_loaded(model):
    assert tuple(model.tag_embeds.shape) == (len(SCENE_TAG_PROMPTS), model.model.config.projection_dim)
    assert not any(name.startswith("text_model") for name, _ in model.model.named_parameters())
    model_without = ClipModel("unused", "cpu")
    assert model_without.tag_embeds is None and model_without.logit_scale is None


def test_a_checkpoint_without_a_logit_scale_uses_clips_trained_one(tmp_path, tiny_model):
    import shutil

    from safetensors.torch import load_file, save_file

    copy = tmp_path / "clip"
    shutil.copytree(tiny_model("clip"), copy)
    weights = load_file(str(copy / "model.safetensors"))
    del weights["logit_scale"]
    save_file(weights, str(copy / "model.safetensors"), metadata={"format": "pt"})
    wrapper = ClipModel(copy, "cpu")
    wrapper.load()
    assert wrapper.logit_scale == DEFAULT_LOGIT_SCALE


def test_the_formatter_prints_the_best_tags(model, frame):
    result = model.infer(ModelInput(frame, PERSON_BOX))
    shown = [tag for tag in result["tags"] if tag["score"] >= 0.15][:3]
    text = format_clip_scene_context({"clip": result})
    if shown:
        assert text.startswith("### Scene Context (CLIP)\n- **Scene tags**: " + shown[0]["label"])
    else:
        assert text == ""


def test_rank_tags_keeps_the_best_k_highest_first():
    assert rank_tags(("a", "b", "c"), [0.2, 0.5, 0.3], k=2) == [
        {"label": "b", "score": 0.5}, {"label": "c", "score": 0.3}]


def test_weather_is_a_distribution_over_the_weather_conditions(model, frame):
    from prompt_formatting import WEATHER_PROMPTS

    weather = model.infer(ModelInput(frame, PERSON_BOX))["weather"]
    assert [entry["label"] for entry in weather["ranked"]][0] == weather["label"]
    assert {entry["label"] for entry in weather["ranked"]} == {label for label, _ in WEATHER_PROMPTS}
    assert sum(entry["score"] for entry in weather["ranked"]) == pytest.approx(1.0, abs=1e-3)


def test_with_the_frames_outputs_shared_only_the_crop_is_embedded(model, frame):
    """Another event on this frame computed the frame's outputs: they are taken as they are, the crop embedded."""
    alone = model.infer(ModelInput(frame, PERSON_BOX))
    shared = {key: alone[key] for key in ("frame_embedding", "dim", "tags", "weather")}
    other_box = (10.0, 10.0, 80.0, 120.0)
    result = model.infer(ModelInput(frame, other_box, shared=shared))
    assert {key: result[key] for key in shared} == shared
    assert result["crop_embedding"] == model.infer(ModelInput(frame, other_box))["crop_embedding"]
