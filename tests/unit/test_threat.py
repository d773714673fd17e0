"""Weapon detector wrapper through its real ultralytics loader on a tiny random checkpoint."""

from __future__ import annotations

import json

import pytest
from PIL import Image, ImageDraw

from prompt_formatting import SEVERITIES, threat_severity
from scripts.fixtures.weights.yolo import THREAT_NAMES, write_checkpoint
from workers.models.base import ModelInput
from workers.models.threat import ThreatModel, threat_report
from workers.models.yolo_family import padded_crop
from workers.settings import ZooSettings

PERSON_BOX = (240.0, 90.0, 360.0, 420.0)


@pytest.fixture(scope="module")
def frame() -> Image.Image:
    image = Image.new("RGB", (640, 480), (110, 120, 130))
    draw = ImageDraw.Draw(image)
    draw.rectangle((270, 140, 330, 410), fill=(40, 40, 60))  # a figure
    draw.polygon([(330, 220), (390, 215), (390, 230), (345, 240)], fill=(15, 15, 15))  # something held
    return image


@pytest.fixture(scope="module")
def model(tiny_model) -> ThreatModel:
    wrapper = ThreatModel(tiny_model("threat"), "cpu")
    wrapper.load()
    yield wrapper
    wrapper.unload()


def test_detections_follow_the_contract_in_frame_pixels(model, frame, monkeypatch):
    monkeypatch.setattr(model, "confidence", 0.0)  # random weights score low: report every candidate
    inputs = ModelInput(frame, PERSON_BOX)

    result = model.infer(inputs)

    assert set(result) == {"threats_detected", "threats", "highest_threat"}
    assert result["threats_detected"] is True and result["threats"]
    assert result["highest_threat"] == result["threats"][0]
    order = [(SEVERITIES.index(d["severity"]), -d["confidence"]) for d in result["threats"]]
    assert order == sorted(order), "most severe first, then most confident"
    crop, (left, top) = padded_crop(inputs)
    for detection in result["threats"]:
        assert set(detection) == {"type", "confidence", "bbox", "severity"}
        assert detection["type"] in THREAT_NAMES.values()
        assert detection["severity"] == threat_severity(detection["type"])
        assert isinstance(detection["confidence"], float)
        x1, y1, x2, y2 = detection["bbox"]
        assert left <= x1 <= x2 <= left + crop.width and top <= y1 <= y2 <= top + crop.height
    assert json.loads(json.dumps(result)) == result


def test_threshold_above_one_reports_nothing(model, frame, monkeypatch):
    monkeypatch.setattr(model, "confidence", 1.01)
    assert model.infer(ModelInput(frame, PERSON_BOX)) == {
        "threats_detected": False, "threats": [], "highest_threat": None,
    }


def test_every_reported_detection_meets_the_threshold(model, frame, monkeypatch):
    monkeypatch.setattr(model, "confidence", 0.0)
    scores = sorted(d["confidence"] for d in model.infer(ModelInput(frame, PERSON_BOX))["threats"])
    cut = scores[len(scores) // 2]
    monkeypatch.setattr(model, "confidence", cut)
    kept = model.infer(ModelInput(frame, PERSON_BOX))["threats"]
    assert kept and all(d["confidence"] >= cut for d in kept)
    assert len(kept) < len(scores)


def test_threshold_comes_from_the_zoo_settings(monkeypatch):
    assert ThreatModel("unused", "cpu", ZooSettings(threat_confidence=0.8)).confidence == 0.8
    monkeypatch.setenv("THREAT_CONFIDENCE", "0.7")  # read by the settings object, not by the family
    assert ThreatModel("unused", "cpu").confidence == 0.7
    monkeypatch.delenv("THREAT_CONFIDENCE")
    assert ThreatModel("unused", "cpu", ZooSettings()).confidence == 0.5


def test_class_names_come_from_the_checkpoint(tmp_path, frame):
    write_checkpoint(tmp_path / "custom.pt", "yolov8n.yaml", {0: "crowbar", 1: "machete"})
    wrapper = ThreatModel(tmp_path, "cpu", ZooSettings(threat_confidence=0.0))
    wrapper.load()
    types = {d["type"] for d in wrapper.infer(ModelInput(frame, PERSON_BOX))["threats"]}
    assert types and types <= {"crowbar", "machete"}


def test_report_keeps_confident_detections_most_severe_first():
    raw = [
        {"type": "knife", "confidence": 0.61234567, "bbox": [1, 2, 3, 4]},
        {"type": "gun", "confidence": 0.9, "bbox": [5.123456, 6, 7, 8]},
        {"type": "gun", "confidence": 0.3, "bbox": [0, 0, 1, 1]},
    ]
    report = threat_report(raw, 0.5)
    assert [d["type"] for d in report["threats"]] == ["gun", "knife"]
    assert report["highest_threat"] == {"type": "gun", "confidence": 0.9, "bbox": [5.1235, 6.0, 7.0, 8.0],
                                        "severity": "critical"}
    assert report["threats"][1] == {"type": "knife", "confidence": 0.6123, "bbox": [1.0, 2.0, 3.0, 4.0],
                                    "severity": "high"}
    assert threat_report(raw, 0.95) == {"threats_detected": False, "threats": [], "highest_threat": None}


@pytest.mark.parametrize(("threat_type", "severity"), [
    ("gun", "critical"), ("Pistol", "critical"), ("rifle", "critical"), ("handgun", "critical"),
    ("grenade", "critical"), ("knife", "high"), ("kitchen_knives", "high"), ("machete", "high"),
    ("baseball bat", "medium"), ("crowbar", "medium"), ("Hammer", "medium"), ("laser pointer", "high"),
])
def test_each_threat_carries_the_severity_of_its_class(threat_type, severity):
    report = threat_report([{"type": threat_type, "confidence": 0.8, "bbox": [0, 0, 1, 1]}], 0.5)
    assert report["threats"][0]["severity"] == severity
    assert report["highest_threat"]["severity"] == severity


def test_the_most_severe_threat_leads_even_when_less_confident():
    raw = [
        {"type": "crowbar", "confidence": 0.97, "bbox": [0, 0, 1, 1]},
        {"type": "knife", "confidence": 0.88, "bbox": [0, 0, 2, 2]},
        {"type": "pistol", "confidence": 0.55, "bbox": [0, 0, 3, 3]},
        {"type": "knife", "confidence": 0.91, "bbox": [0, 0, 4, 4]},
    ]
    report = threat_report(raw, 0.5)
    assert [(d["type"], d["confidence"]) for d in report["threats"]] == [
        ("pistol", 0.55), ("knife", 0.91), ("knife", 0.88), ("crowbar", 0.97),
    ]
    assert report["highest_threat"]["type"] == "pistol"
    assert [d["severity"] for d in report["threats"]] == ["critical", "high", "high", "medium"]


def test_the_seed_formatter_section_leads_with_the_highest_threat():
    from prompt_formatting import format_ondemand_enrichment_context

    raw = [{"type": "knife", "confidence": 0.93, "bbox": [1, 2, 3, 4]},
           {"type": "gun", "confidence": 0.71, "bbox": [5, 6, 7, 8]}]
    text = format_ondemand_enrichment_context({"threat": threat_report(raw, 0.5)})
    assert "- **Type**: GUN\n- **Severity**: critical" in text
    assert "knife (high severity, 93%)" in text


def test_infer_after_unload_raises_until_loaded_again(tiny_model, frame):
    wrapper = ThreatModel(tiny_model("threat"), "cpu")
    wrapper.load()
    wrapper.unload()
    with pytest.raises(RuntimeError, match="ThreatModel is not loaded; call load"):
        wrapper.infer(ModelInput(frame, PERSON_BOX))
    wrapper.load()
    assert "threats_detected" in wrapper.infer(ModelInput(frame, PERSON_BOX))


def test_a_pose_checkpoint_is_refused(tiny_model):
    wrapper = ThreatModel(tiny_model("pose"), "cpu")
    with pytest.raises(ValueError, match="not a detector"):
        wrapper.load()
    assert not wrapper.loaded
