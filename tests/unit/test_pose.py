"""YOLOv8-pose wrapper through its real ultralytics loader on a tiny random checkpoint."""

from __future__ import annotations

import json

import pytest
from PIL import Image, ImageDraw

from scripts.fixtures.weights.yolo import write_checkpoint
from tests.unit.test_posture import CRAWLING, LYING, RUNNING, UPRIGHT, skeleton
from workers.models.base import ModelInput
from workers.models.pose import PoseModel, box_iou, overlapping, pose_result
from workers.models.posture import POSTURES, SUSPICIOUS_POSTURES
from workers.models.yolo_family import find_checkpoint, padded_crop
from workers.settings import ZooSettings

PERSON_BOX = (240.0, 90.0, 360.0, 420.0)


@pytest.fixture(scope="module")
def frame() -> Image.Image:
    image = Image.new("RGB", (640, 480), (120, 130, 120))
    draw = ImageDraw.Draw(image)
    draw.rectangle((270, 140, 330, 300), fill=(40, 40, 60))  # torso
    draw.ellipse((280, 95, 320, 140), fill=(200, 170, 150))  # head
    draw.rectangle((275, 300, 295, 415), fill=(30, 30, 30))  # legs
    draw.rectangle((305, 300, 325, 415), fill=(30, 30, 30))
    return image


@pytest.fixture(scope="module")
def model(tiny_model) -> PoseModel:
    wrapper = PoseModel(tiny_model("pose"), "cpu")
    wrapper.load()
    yield wrapper
    wrapper.unload()


def test_person_keypoints_in_frame_pixels(model, frame, monkeypatch):
    monkeypatch.setattr(model, "confidence", 0.001)  # random weights score low: let every candidate through
    inputs = ModelInput(frame, PERSON_BOX)

    result = model.infer(inputs)

    assert set(result) == {"poses", "posture", "posture_confidence", "keypoints", "persons_detected"}
    assert result["persons_detected"] >= len(result["poses"]) > 0
    for person in result["poses"]:
        assert set(person) == {"posture", "confidence", "suspicious", "keypoints", "bbox"}
        assert person["posture"] in POSTURES and isinstance(person["confidence"], float)
        assert person["suspicious"] is (person["posture"] in SUSPICIOUS_POSTURES)
        assert len(person["keypoints"]) == 17 and len(person["bbox"]) == 4
    subject = result["poses"][0]
    assert (result["posture"], result["posture_confidence"], result["keypoints"]) == (
        subject["posture"], subject["confidence"], subject["keypoints"])
    assert len(result["keypoints"]) == 17 and all(len(point) == 3 for point in result["keypoints"])
    crop, (left, top) = padded_crop(inputs)
    for x, y, confidence in result["keypoints"]:
        assert left <= x <= left + crop.width and top <= y <= top + crop.height
        assert 0.0 <= confidence <= 1.0
    assert json.loads(json.dumps(result)) == result


def test_nobody_above_the_threshold_is_unknown(model, frame, monkeypatch):
    monkeypatch.setattr(model, "confidence", 1.01)
    result = model.infer(ModelInput(frame, PERSON_BOX))
    assert result == {"poses": [], "posture": "unknown", "posture_confidence": 0.0, "keypoints": [],
                      "persons_detected": 0}


def test_person_threshold_comes_from_the_zoo_settings(monkeypatch):
    assert PoseModel("unused", "cpu", ZooSettings(pose_confidence=0.6)).confidence == 0.6
    monkeypatch.delenv("POSE_CONFIDENCE", raising=False)
    assert PoseModel("unused", "cpu").confidence == 0.25  # ultralytics' default


def test_the_person_overlapping_the_event_box_is_chosen():
    bystander = skeleton({k: (x + 400, y) for k, (x, y) in UPRIGHT.items()}, right_wrist=(545, 30))
    subject = skeleton(UPRIGHT)
    result = pose_result((95, 60, 150, 390), [[490, 60, 550, 390], [95, 60, 150, 390]], [bystander, subject])
    assert result["posture"] == "standing"
    assert result["keypoints"] == subject
    assert result["persons_detected"] == 2
    assert [p["keypoints"] for p in result["poses"]] == [subject], "a person outside the event box is not listed"


def test_poses_list_everyone_in_the_event_box_the_subject_first_with_the_seed_keys():
    crouching = skeleton(UPRIGHT, left_ankle=(105, 230), right_ankle=(135, 230))
    arms_up = skeleton({k: (x + 60, y) for k, (x, y) in UPRIGHT.items()}, right_wrist=(205, 30))
    result = pose_result((95, 60, 150, 390), [[130, 60, 190, 390], [95, 60, 150, 390]], [arms_up, crouching])
    postures = [(p["posture"], p["suspicious"]) for p in result["poses"]]
    assert postures == [("crouching", True), ("arms_raised", False)]
    assert result["poses"][0] == {"posture": "crouching", "confidence": 0.9, "suspicious": True,
                                  "keypoints": crouching, "bbox": [95.0, 60.0, 150.0, 390.0]}
    assert (result["posture"], result["posture_confidence"], result["persons_detected"]) == ("crouching", 0.9, 2)


@pytest.mark.parametrize(("points", "posture", "suspicious"), [
    (UPRIGHT, "standing", False),
    ({**UPRIGHT, "left_ankle": (105, 230), "right_ankle": (135, 230)}, "crouching", True),
    (RUNNING, "running", False),
    (LYING, "lying_down", True),
    (CRAWLING, "crawling", True),
    ({**UPRIGHT, "right_wrist": (145, 30)}, "arms_raised", False),
])
def test_each_posture_reaches_the_seed_shape_flagged_when_it_matters_at_a_door(points, posture, suspicious):
    keypoints = skeleton(points)
    xs, ys = [p[0] for p in keypoints if p[2]], [p[1] for p in keypoints if p[2]]
    box = [min(xs), min(ys), max(xs), max(ys)]
    person = pose_result(box, [box], [keypoints])["poses"][0]
    assert (person["posture"], person["suspicious"]) == (posture, suspicious)


def test_box_overlap():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    assert overlapping((0, 0, 10, 10), [(20, 20, 30, 30), (2, 2, 12, 12), (5, 5, 15, 15)]) == [1, 2]
    assert overlapping((0, 0, 10, 10), [(20, 20, 30, 30)]) == []
    assert overlapping((0, 0, 10, 10), []) == []


def test_infer_after_unload_raises_until_loaded_again(tiny_model, frame):
    wrapper = PoseModel(tiny_model("pose"), "cpu")
    wrapper.load()
    wrapper.unload()
    with pytest.raises(RuntimeError, match="not loaded"):
        wrapper.infer(ModelInput(frame, PERSON_BOX))
    wrapper.load()
    assert "posture" in wrapper.infer(ModelInput(frame, PERSON_BOX))


def test_a_detector_checkpoint_is_refused(tmp_path):
    write_checkpoint(tmp_path / "detector.pt", "yolov8n.yaml", {0: "gun"})
    wrapper = PoseModel(tmp_path, "cpu")
    with pytest.raises(ValueError, match="not a pose model"):
        wrapper.load()
    assert not wrapper.loaded


def test_checkpoint_is_found_in_a_file_or_directory(tmp_path):
    (tmp_path / "weights").mkdir()
    nested = tmp_path / "weights" / "yolov8n-pose.pt"
    nested.write_bytes(b"")
    assert find_checkpoint(nested) == nested
    assert find_checkpoint(tmp_path) == nested
    (tmp_path / "weights" / "best.pt").write_bytes(b"")
    assert find_checkpoint(tmp_path) == tmp_path / "weights" / "best.pt"
    (tmp_path / "last.pt").write_bytes(b"")
    assert find_checkpoint(tmp_path) == tmp_path / "last.pt"  # the top level wins
    (tmp_path / "other.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="exactly one"):
        find_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError):
        find_checkpoint(tmp_path / "missing")
