"""Florence-2 scene wrapper through its real transformers loader on a tiny random model and processor."""

from __future__ import annotations

import json

import pytest
from PIL import Image, ImageDraw

from prompt_formatting import format_florence_scene_context
from scripts.fixtures.weights.florence import image_token_count
from workers.models.base import ModelInput
from workers.models.florence import (
    DENSE_REGIONS_TASK,
    SECURITY_OBJECTS,
    SECURITY_TASKS,
    FlorenceModel,
    answer_to_contract,
    polygon_box,
    special_tokens_pattern,
)
from workers.settings import ZooSettings

FRAME_SIZE = (320, 240)
PERSON_BOX = (120.0, 40.0, 200.0, 230.0)


@pytest.fixture(scope="module")
def frame() -> Image.Image:
    image = Image.new("RGB", FRAME_SIZE, (70, 120, 80))
    draw = ImageDraw.Draw(image)
    draw.rectangle((130, 50, 190, 225), fill=(25, 25, 30))
    draw.rectangle((20, 20, 100, 50), fill=(240, 240, 240))
    draw.text((28, 28), "ABC 123", fill=(0, 0, 0))
    return image


@pytest.fixture(scope="module")
def path(tiny_model):
    return tiny_model("florence")


@pytest.fixture(scope="module")
def model(path) -> FlorenceModel:
    wrapper = FlorenceModel(path, "cpu", ZooSettings(florence_max_new_tokens=24))
    wrapper.load()
    yield wrapper
    wrapper.unload()


def test_seed_security_tasks_and_object_query():
    assert [(t.key, t.token) for t in SECURITY_TASKS] == [
        ("scene", "<MORE_DETAILED_CAPTION>"),
        ("security_objects", "<OPEN_VOCABULARY_DETECTION>"),
        ("text_regions", "<OCR_WITH_REGION>"),
    ]
    assert SECURITY_TASKS[1].prompt == "<OPEN_VOCABULARY_DETECTION>" + SECURITY_OBJECTS
    assert SECURITY_OBJECTS.split(". ")[:3] == ["person", "face", "vehicle"]
    assert SECURITY_OBJECTS.endswith("animal. dog. cat.")


def test_infer_on_the_full_frame_fills_the_contract(model, frame):
    result = model.infer(ModelInput(frame, PERSON_BOX))

    assert set(result) == {"scene", "security_objects", "text_regions"}
    assert isinstance(result["scene"], str)
    assert "<pad>" not in result["scene"] and "</s>" not in result["scene"]
    objects, texts = result["security_objects"], result["text_regions"]
    assert set(objects) == {"labels", "bboxes"} and len(objects["labels"]) == len(objects["bboxes"])
    assert all(len(box) == 4 and all(isinstance(v, float) for v in box) for box in objects["bboxes"])
    assert set(texts) == {"labels", "quad_boxes"} and len(texts["labels"]) == len(texts["quad_boxes"])
    assert all(len(quad) == 8 for quad in texts["quad_boxes"])
    # boxes are dequantised into the frame's own pixel space
    width, height = FRAME_SIZE
    for box in objects["bboxes"] + texts["quad_boxes"]:
        assert all(0 <= x <= width for x in box[0::2]) and all(0 <= y <= height for y in box[1::2])
    assert json.loads(json.dumps(result)) == result


def test_dense_regions_join_when_asked(path, frame):
    wrapper = FlorenceModel(path, "cpu", ZooSettings(florence_dense_regions=True, florence_max_new_tokens=16))
    wrapper.load()
    result = wrapper.infer(ModelInput(frame, PERSON_BOX))
    wrapper.unload()
    assert set(result) == {"scene", "security_objects", "text_regions", "dense_regions"}
    assert set(result["dense_regions"]) == {"labels", "bboxes"}


def test_dense_regions_follow_the_zoo_settings(monkeypatch):
    monkeypatch.setenv("FLORENCE_DENSE_REGIONS", "1")  # read by the settings object, not by the family
    assert FlorenceModel("unused", "cpu").tasks[-1] == DENSE_REGIONS_TASK
    monkeypatch.setenv("FLORENCE_DENSE_REGIONS", "0")
    assert DENSE_REGIONS_TASK not in FlorenceModel("unused", "cpu").tasks
    assert DENSE_REGIONS_TASK in FlorenceModel("unused", "cpu", ZooSettings(florence_dense_regions=True)).tasks


def test_generation_is_bounded(model, frame, monkeypatch):
    seen = {}
    generate = model.model.generate

    def spy(**kwargs):
        seen.update(kwargs)
        return generate(**kwargs)

    monkeypatch.setattr(model.model, "generate", spy)
    model.infer(ModelInput(frame, PERSON_BOX))
    assert seen["max_new_tokens"] == 24 and seen["do_sample"] is False
    assert seen["input_ids"].shape[0] == len(SECURITY_TASKS)  # one batch for all tasks


def test_generation_options_come_from_the_zoo_settings(monkeypatch):
    monkeypatch.delenv("FLORENCE_MAX_NEW_TOKENS", raising=False)
    monkeypatch.delenv("FLORENCE_NUM_BEAMS", raising=False)
    assert FlorenceModel("unused", "cpu").generate_options() == {"max_new_tokens": 256, "do_sample": False}
    monkeypatch.setenv("FLORENCE_MAX_NEW_TOKENS", "64")  # read by the settings object, not by the family
    assert FlorenceModel("unused", "cpu").generate_options()["max_new_tokens"] == 64
    configured = FlorenceModel("unused", "cpu", ZooSettings(florence_max_new_tokens=32, florence_num_beams=3))
    assert configured.generate_options() == {"max_new_tokens": 32, "do_sample": False, "num_beams": 3}


def test_processor_parses_florence_answers_into_the_contract(model):
    """Known generated texts through the saved processor's own post_process_generation."""
    processor = model.processor
    size = (1000, 500)

    def parse(task: str, text: str):
        return processor.post_process_generation(text, task=task, image_size=size)[task]

    caption = answer_to_contract("scene", parse("<MORE_DETAILED_CAPTION>", "</s><s>A man at a door.</s>"))
    assert caption == "A man at a door."

    detected = answer_to_contract(
        "security_objects",
        parse("<OPEN_VOCABULARY_DETECTION>", "</s><s>person<loc_100><loc_200><loc_300><loc_800>"
              "knife<loc_500><loc_500><loc_550><loc_600></s>"),
    )
    assert detected == {
        "labels": ["person", "knife"],
        "bboxes": [[100.0, 100.0, 300.0, 400.0], [500.0, 250.0, 550.0, 300.0]],
    }

    ocr = answer_to_contract(
        "text_regions",
        parse("<OCR_WITH_REGION>", "</s><s>ABC 123<loc_10><loc_20><loc_90><loc_20><loc_90><loc_60><loc_10><loc_60></s>"),
    )
    assert ocr == {"labels": ["ABC 123"], "quad_boxes": [[10.0, 10.0, 90.0, 10.0, 90.0, 30.0, 10.0, 30.0]]}

    dense = answer_to_contract(
        "dense_regions", parse("<DENSE_REGION_CAPTION>", "</s><s>a red car<loc_0><loc_0><loc_999><loc_999></s>")
    )
    assert dense == {"labels": ["a red car"], "bboxes": [[0.0, 0.0, 999.0, 499.0]]}

    # The seed's formatter, given these answers under the seed's keys, prints every one of its parts.
    section = format_florence_scene_context({"scene": caption, "security_objects": detected, "text_regions": ocr})
    assert '**Scene Description:**\n"A man at a door."' in section
    assert '**Objects Detected:** "person", "knife"' in section
    assert '- **HIGH RISK OBJECTS**: "knife"' in section
    assert '**Visible Text:** "ABC 123"' in section


def test_special_tokens_left_by_the_parse_never_reach_the_result(model):
    """Random weights generate location bins inside a caption and structure tokens inside labels; the processor's
    parse keeps them in pure text, so the tokenizer's own special tokens are taken out after it."""
    processor = model.processor
    special = special_tokens_pattern(processor.tokenizer)

    def parse(task: str, text: str):
        return processor.post_process_generation(text, task=task, image_size=(1000, 500))[task]

    caption = parse("<MORE_DETAILED_CAPTION>", "</s><s><loc_589><loc_775>A man<poly> at a<pad> door.<sep></s>")
    assert "<loc_589>" in caption  # what the processor's parse alone leaves
    assert answer_to_contract("scene", caption, special) == "A man at a door."
    detected = answer_to_contract(
        "security_objects",
        parse("<OPEN_VOCABULARY_DETECTION>", "</s><s>per<and>son<loc_100><loc_200><loc_300><loc_800></s>"), special)
    assert len(detected["bboxes"]) == 1 and not any(special.search(label) for label in detected["labels"])


def test_fragments_of_location_tokens_are_removed_and_their_empty_labels_dropped_with_their_boxes():
    """make demo showed `"loc_461>" x42`: the parse takes a location token's "<" for a box and leaves the rest."""
    answer = {"labels": ["loc_461>", "person", "<loc_1>car loc_2>"], "bboxes": [[0, 0, 5, 5], [1, 1, 9, 9], [2, 2, 8, 8]]}
    assert answer_to_contract("security_objects", answer, None) == {
        "labels": ["person", "car"], "bboxes": [[1.0, 1.0, 9.0, 9.0], [2.0, 2.0, 8.0, 8.0]]}
    assert answer_to_contract("scene", "loc_589>A dog<loc_775> on a lawn loc_3>", None) == "A dog on a lawn"
    regions = {"labels": ["loc_9>", "ABC-123"], "quad_boxes": [[0, 0, 4, 0, 4, 4, 0, 4], [1, 1, 5, 1, 5, 5, 1, 5]]}
    assert answer_to_contract("text_regions", regions, None)["labels"] == ["ABC-123"]


def test_open_vocabulary_polygons_are_boxed_beside_boxes():
    answer = {
        "bboxes": [[1, 2, 3, 4]], "bboxes_labels": ["bag"],
        "polygons": [[[10, 20, 30, 5, 25, 40]]], "polygons_labels": ["dog"],
    }
    assert answer_to_contract("security_objects", answer) == {
        "labels": ["bag", "dog"], "bboxes": [[1.0, 2.0, 3.0, 4.0], [10.0, 5.0, 30.0, 40.0]],
    }
    assert polygon_box([[0, 0, 4, 2], [6, 1]]) == [0.0, 0.0, 6.0, 2.0]


def test_empty_polygons_are_dropped_with_their_labels():
    answer = {
        "bboxes": [], "bboxes_labels": [],
        "polygons": [[[]], [[4, 4, 8, 9, 6]]], "polygons_labels": ["nothing", "box"],
    }
    assert answer_to_contract("security_objects", answer) == {"labels": ["box"], "bboxes": [[4.0, 4.0, 8.0, 9.0]]}


def test_tiny_writer_saves_a_native_florence_directory(path):
    from transformers import AutoConfig, AutoProcessor

    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "florence2"
    processor = AutoProcessor.from_pretrained(path)
    assert type(processor).__name__ == "Florence2Processor"
    tokenizer = processor.tokenizer
    assert tokenizer.convert_tokens_to_ids("<loc_999>") != tokenizer.unk_token_id
    assert processor.image_token_id == config.image_token_id
    # the saved processor emits as many image tokens as the vision tower yields features
    inputs = processor(text="<OCR>", images=Image.new("RGB", (50, 40)), return_tensors="pt")
    assert int((inputs["input_ids"] == config.image_token_id).sum()) == image_token_count(
        processor.image_processor.size["height"], config.vision_config.patch_stride
    )


def test_infer_before_load_is_an_error(frame):
    with pytest.raises(RuntimeError, match="not loaded"):
        FlorenceModel("unused", "cpu").infer(ModelInput(frame, PERSON_BOX))
