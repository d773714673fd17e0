"""Age/gender: the label parser, both checkpoint layouts through the real loader, and the face crop choice."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from prompt_formatting import describe_age, format_ondemand_enrichment_context
from scripts.fixtures.weights.classifiers import write_age_gender, write_tiny_classifier
from workers.models.age_gender import (
    AgeGenderModel,
    age_group_of,
    checkpoint_keys,
    dual_head_result,
    is_dual_head,
    parse_age_gender,
)
from workers.models.base import ModelInput

# Plausible combined labels for a classifier-style age/gender model; a real one's come from its config.
COMBINED_LABELS = ["0-12 male", "0-12 female", "13-19 male", "13-19 female", "20-39 male", "20-39 female", "60+ female"]
CONTRACT_KEYS = {"age_group", "gender", "confidence", "label", "age", "top_k", "face_source"}  # seed's first


def person_frame() -> Image.Image:
    frame = Image.new("RGB", (160, 240), (40, 60, 80))
    frame.paste((220, 180, 150), (60, 20, 100, 60))  # a face-coloured patch near the top of the person
    return frame


PERSON_BOX = (40.0, 10.0, 120.0, 230.0)
FACE_BOX = (60.0, 20.0, 100.0, 60.0)


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("25-32_male", ("25-32", "male")),
        ("Male 25-32", ("25-32", "male")),
        ("0-12 female", ("0-12", "female")),
        ("(38-43)", ("38-43", None)),
        ("female", (None, "female")),
        ("Woman", (None, "female")),
        ("boy", (None, "male")),
        ("60+", ("60+", None)),
        ("female_more_than_70", ("70+", "female")),
        ("70 and above, man", ("70+", "male")),
        ("under 10", ("<10", None)),
        ("Man, 34 years", ("34", "male")),
        ("20s female", ("20s", "female")),
        ("young_adult_female", ("young adult", "female")),
        ("middle aged man", ("middle-aged", "male")),
        ("senior", ("senior", None)),
        ("LABEL_0", (None, None)),
        ("label 12", (None, None)),
        ("car", (None, None)),
    ],
)
def test_parser_reads_age_and_gender_out_of_labels(label, expected):
    assert parse_age_gender(label) == expected


@pytest.mark.parametrize(
    ("age", "group", "in_words"),
    [
        ("34", "30-39", "adult (30-39)"),
        ("7", "0-9", "child (0-9)"),
        ("100", "100-109", "senior (100-109)"),
        ("25-32", "25-32", "young adult to adult (25-32)"),
        ("60+", "60+", "middle-aged to senior (60 or older)"),
        ("20s", "20-29", "young adult (20-29)"),
        ("<10", "0-9", "child (0-9)"),
        ("young adult", "young adult", "young adult (about 18-29)"),
        ("middle-aged", "middle-aged", "middle-aged (about 45-64)"),
        ("baby", "child", "child (about 0-12)"),
        ("teenager", "teenager", "teenager (about 13-17)"),
        ("senior", "senior", "senior (about 65 or older)"),
        ("999", None, None),
        (None, None, None),
    ],
)
def test_age_group_is_a_range_or_group_the_prompt_reads_in_words(age, group, in_words):
    assert age_group_of(age) == group
    assert describe_age(group) == in_words


@pytest.mark.parametrize("label", [
    "25-32_male", "0-12 female", "60+", "female_more_than_70", "under 10", "Man, 34 years", "20s female",
    "young_adult_female", "middle aged man", "senior",
])
def test_every_parsed_age_has_an_age_group(label):
    age, _ = parse_age_gender(label)
    assert age_group_of(age) is not None and describe_age(age_group_of(age)) is not None


def test_the_seed_formatter_reads_the_record_and_says_demographics_never_decide_risk():
    record = dual_head_result(age_years=41.2, female_probability=0.7)
    seed_view = {key: record[key] for key in ("age_group", "gender", "confidence")}
    text = format_ondemand_enrichment_context({"demographics": seed_view})
    assert "- **Estimated age group**: adult to middle-aged (40-49)" in text
    assert "- **Gender**: female" in text and "- **Confidence**: 70%" in text
    assert "- Demographics never raise or lower risk on their own" in text


def test_parser_does_not_read_male_inside_female():
    assert parse_age_gender("FEMALE_25-32")[1] == "female"


def test_dual_head_result_clamps_age_and_ranks_gender():
    result = dual_head_result(age_years=131.7, female_probability=0.2)
    assert result["age"] == "100"
    assert result["gender"] == "male" and result["confidence"] == 0.8
    assert [entry["label"] for entry in result["top_k"]] == ["male", "female"]
    assert dual_head_result(-4.0, 0.9)["age"] == "0"
    assert dual_head_result(33.4, 0.9)["label"] == "female, 33 years"
    assert dual_head_result(33.4, 0.9)["age_group"] == "30-39"


@pytest.fixture(scope="module")
def dual_head_model(tiny_model):
    model = AgeGenderModel(tiny_model("age_gender"), "cpu")
    model.load()
    yield model
    model.unload()


@pytest.fixture(scope="module")
def classifier_model(tmp_path_factory):
    dest = tmp_path_factory.mktemp("age-gender-classifier")
    write_tiny_classifier(dest, COMBINED_LABELS)
    model = AgeGenderModel(dest, "cpu")
    model.load()
    yield model
    model.unload()


def check_contract(result: dict) -> None:
    assert set(result) == CONTRACT_KEYS
    assert isinstance(result["label"], str) and isinstance(result["confidence"], float)
    assert 0.0 <= result["confidence"] <= 1.0
    assert result["age"] is None or isinstance(result["age"], str)
    assert result["age_group"] == age_group_of(result["age"])
    assert result["age_group"] is None or describe_age(result["age_group"]) is not None
    assert result["gender"] in (None, "male", "female")
    scores = [entry["score"] for entry in result["top_k"]]
    assert scores == sorted(scores, reverse=True) and result["confidence"] == scores[0]
    assert json.loads(json.dumps(result)) == result


def test_tiny_weights_have_the_default_models_dual_head_layout(tiny_model):
    assert is_dual_head(checkpoint_keys(tiny_model("age_gender")))


def test_dual_head_model_reports_age_in_years_and_gender(dual_head_model):
    assert dual_head_model.layout == "dual_head"
    result = dual_head_model.infer(ModelInput(person_frame(), PERSON_BOX, face_bbox=FACE_BOX))
    check_contract(result)
    assert result["age"].isdigit() and 0 <= int(result["age"]) <= 100
    assert result["gender"] in ("male", "female")
    assert sum(entry["score"] for entry in result["top_k"]) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("layout", ["dual_head_model", "classifier_model"])
def test_face_source_follows_the_face_box(layout, request):
    model = request.getfixturevalue(layout)
    with_face = ModelInput(person_frame(), PERSON_BOX, face_bbox=FACE_BOX)
    without_face = ModelInput(person_frame(), PERSON_BOX)
    assert model.infer(with_face)["face_source"] == "face_bbox"
    assert model.infer(without_face)["face_source"] == "person_top_quarter"


@pytest.mark.parametrize("layout", ["dual_head_model", "classifier_model"])
def test_infer_runs_on_the_face_crop(layout, request):
    model = request.getfixturevalue(layout)
    for inputs in (ModelInput(person_frame(), PERSON_BOX, face_bbox=FACE_BOX), ModelInput(person_frame(), PERSON_BOX)):
        result = model.infer(inputs)
        assert {k: v for k, v in result.items() if k != "face_source"} == model.predict(inputs.face_crop())


def test_classifier_labels_come_from_its_config_and_are_parsed(classifier_model):
    assert classifier_model.layout == "classifier"
    result = classifier_model.infer(ModelInput(person_frame(), PERSON_BOX, face_bbox=FACE_BOX))
    check_contract(result)
    assert result["label"] in COMBINED_LABELS
    assert all(entry["label"] in COMBINED_LABELS for entry in result["top_k"])
    assert (result["age"], result["gender"]) == parse_age_gender(result["label"])
    assert result["age"] is not None and result["gender"] is not None


def test_classifier_with_placeholder_labels_gives_null_age_and_gender(tmp_path):
    write_tiny_classifier(tmp_path, ["LABEL_0", "LABEL_1"])
    model = AgeGenderModel(tmp_path, "cpu")
    model.load()
    result = model.infer(ModelInput(person_frame(), PERSON_BOX))
    assert result["age"] is None and result["gender"] is None and result["age_group"] is None
    check_contract(result)


def test_checkpoint_keys_reads_pytorch_bin_files(tmp_path, tiny_model):
    import torch
    from safetensors.torch import load_file

    state = load_file(str(tiny_model("age_gender") / "model.safetensors"))
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert checkpoint_keys(tmp_path) == set(state)


def test_dual_head_checkpoint_missing_a_head_layer_is_refused(tmp_path, tiny_model):
    import shutil

    from safetensors.torch import load_file, save_file

    source = tiny_model("age_gender")
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(source / name, tmp_path / name)
    state = load_file(str(source / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("gender_head.6.")}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="gender_head.6"):
        AgeGenderModel(tmp_path, "cpu").load()


def test_directory_without_weights_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model weights"):
        AgeGenderModel(tmp_path, "cpu").load()


def test_unload_drops_the_model(tmp_path):
    write_age_gender(tmp_path)
    model = AgeGenderModel(tmp_path, "cpu")
    model.load()
    model.unload()
    assert model.layout is None and not model.loaded and model.processor is None
