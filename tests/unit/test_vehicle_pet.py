"""Vehicle and pet classifiers through the Hugging Face crop classifier on tiny random checkpoints."""

from __future__ import annotations

import json

import pytest
from PIL import Image, ImageDraw

from scripts.fixtures.weights.classifiers import PET_CLASSES, VEHICLE_SEGMENT_CLASSES
from workers.models.base import ModelInput
from workers.models.pet import PetModel
from workers.models.vehicle import VehicleModel

BOX = (60.0, 50.0, 220.0, 170.0)


@pytest.fixture(scope="module")
def frame() -> Image.Image:
    image = Image.new("RGB", (320, 240), (120, 120, 125))
    draw = ImageDraw.Draw(image)
    draw.rectangle((70, 90, 210, 160), fill=(180, 20, 20))
    draw.ellipse((85, 140, 115, 170), fill=(10, 10, 10))
    draw.ellipse((165, 140, 195, 170), fill=(10, 10, 10))
    return image


@pytest.fixture(scope="module", params=[(VehicleModel, "vehicle", VEHICLE_SEGMENT_CLASSES), (PetModel, "pet", PET_CLASSES)],
                ids=["vehicle", "pet"])
def case(request, tiny_model):
    cls, name, labels = request.param
    wrapper = cls(tiny_model(name), "cpu")
    wrapper.load()
    yield wrapper, labels
    wrapper.unload()


def test_contract_label_confidence_and_top3(case, frame):
    model, labels = case
    result = model.infer(ModelInput(frame, BOX, detection_type="vehicle"))
    assert set(result) == {"label", "confidence", "top_k"}
    assert len(result["top_k"]) == min(3, len(labels))
    assert all(set(entry) == {"label", "score"} for entry in result["top_k"])
    assert {entry["label"] for entry in result["top_k"]} <= set(labels)
    assert result["label"] == result["top_k"][0]["label"]
    assert result["confidence"] == result["top_k"][0]["score"]
    scores = [entry["score"] for entry in result["top_k"]]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    assert json.loads(json.dumps(result)) == result


def test_labels_come_from_the_checkpoint(case):
    model, labels = case
    assert model.labels == list(labels)


def test_classifies_the_detection_crop_not_the_frame(case, frame):
    model, _ = case
    crop = frame.crop((60, 50, 220, 170))
    assert model.infer(ModelInput(frame, BOX)) == model.classify(crop, top_k=3)


def test_vehicle_classes_are_the_seed_segments():
    assert {"car", "pickup_truck", "work_van", "bus", "motorcycle", "bicycle"} <= set(VEHICLE_SEGMENT_CLASSES)
    assert PET_CLASSES == ("cat", "dog")


@pytest.mark.parametrize("cls", [VehicleModel, PetModel])
def test_infer_before_load_is_an_error(cls, frame):
    with pytest.raises(RuntimeError, match="not loaded"):
        cls("unused", "cpu").infer(ModelInput(frame, BOX))
