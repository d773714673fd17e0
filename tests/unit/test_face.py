"""Face family: head region, alignment and quality as pure functions; real MTCNN on real photos; tagged embeddings."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageFilter

from tests.face_models import tiny_face_dir
from workers.models.base import ModelInput
from workers.models.face import (
    ALIGNMENT,
    EMBEDDING_DIM,
    FaceDetector,
    FaceModel,
    align_face,
    alignment_coefficients,
    embedder_file,
    embedder_model_id,
    embedder_state,
    eye_angle_degrees,
    face_quality,
    frontal_score,
    head_region,
    laplacian_variance,
    shipped_mtcnn_dir,
)

skimage_data = pytest.importorskip("skimage.data")

# The astronaut's face in skimage.data.astronaut() (512x512), drawn by eye: hairline to chin, cheek to cheek.
ASTRONAUT_FACE = (182.0, 64.0, 266.0, 172.0)
ASTRONAUT_PERSON = (20.0, 10.0, 470.0, 512.0)  # her whole figure, suit and all


def iou(a, b) -> float:
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, right - left) * max(0.0, bottom - top)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skimage_data, name)()).convert("RGB")


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    """MTCNN with the real weights shipped in facenet-pytorch's wheel (nothing generated)."""
    return FaceDetector.load(shipped_mtcnn_dir(), "cpu")


@pytest.fixture(scope="module")
def face_dir(tiny_models_dir):
    return tiny_face_dir(tiny_models_dir)


@pytest.fixture(scope="module")
def face(face_dir):
    model = FaceModel(face_dir, "cpu")
    model.load()
    yield model
    model.unload()


# -- head region --------------------------------------------------------------------------------------------
def test_head_region_of_a_standing_person_is_the_top_of_the_box_padded():
    x1, y1, x2, y2 = head_region((100, 100, 200, 450), (1000, 1000))
    assert (x1, x2) == (80, 220)  # 20% of the width each side
    assert (y1, y2) == (79, 226)  # 30% of 350 tall (105), padded by 20% of that above and below
    assert y2 < 275  # nowhere near the legs


def test_head_region_of_a_close_up_is_the_whole_box():
    assert head_region((100, 100, 300, 300), (1000, 1000)) == (60, 60, 340, 340)


@given(st.floats(0, 900), st.floats(0, 900), st.floats(2, 600), st.floats(2, 600), st.integers(50, 2000),
       st.integers(50, 2000))
def test_head_region_stays_in_the_frame_and_holds_the_top_of_the_box(x, y, w, h, frame_w, frame_h):
    x1, y1, x2, y2 = head_region((x, y, x + w, y + h), (frame_w, frame_h))
    assert 0 <= x1 <= max(x, 0) and 0 <= y1 <= y
    assert x2 <= frame_w and y2 <= frame_h
    assert y2 >= min(y + 0.3 * h, frame_h) - 1e-6  # the head is never cut off by the region


# -- alignment ----------------------------------------------------------------------------------------------
def forward(coefficients, x, y):
    a, b, c, d, e, f = coefficients
    return a * x + b * y + c, d * x + e * y + f


@given(st.floats(50, 400), st.floats(50, 400), st.floats(8, 120), st.floats(-60, 60))
def test_alignment_maps_the_template_eyes_onto_the_face_eyes(cx, cy, distance, degrees):
    angle = math.radians(degrees)
    half = (distance / 2 * math.cos(angle), distance / 2 * math.sin(angle))
    left, right = (cx - half[0], cy - half[1]), (cx + half[0], cy + half[1])
    coefficients = alignment_coefficients([left, right, (cx, cy + 10), (0, 0), (0, 0)])
    side = ALIGNMENT.size
    eye_y = ALIGNMENT.eye_line * side
    spread = ALIGNMENT.eye_distance * side / 2
    assert forward(coefficients, side / 2 - spread, eye_y) == pytest.approx(left, abs=1e-6)
    assert forward(coefficients, side / 2 + spread, eye_y) == pytest.approx(right, abs=1e-6)


def test_a_tilted_face_comes_out_level(detector):
    tilted = photo("astronaut").rotate(20, center=(225, 120), resample=Image.Resampling.BILINEAR)
    found = detector.detect(tilted)[0]
    assert abs(eye_angle_degrees(found.landmarks)) > 12
    aligned = align_face(tilted, found.landmarks)
    again = detector.detect(aligned.resize((320, 320)))
    assert len(again) == 1 and abs(eye_angle_degrees(again[0].landmarks)) < 4


# -- quality ------------------------------------------------------------------------------------------------
def test_laplacian_variance_is_zero_on_flat_and_drops_with_blur():
    flat = np.full((40, 40), 128.0)
    assert laplacian_variance(flat) == 0.0
    noisy = np.random.default_rng(0).integers(0, 255, (60, 60)).astype(np.float32)
    blurred = np.asarray(Image.fromarray(noisy.astype(np.uint8)).filter(ImageFilter.GaussianBlur(2)), dtype=np.float32)
    assert laplacian_variance(noisy) > 20 * laplacian_variance(blurred)


def test_frontal_is_one_facing_the_camera_one_half_at_three_quarters_and_zero_in_profile():
    eyes = [(100.0, 100.0), (140.0, 100.0)]
    mouth = [(105.0, 140.0), (135.0, 140.0)]
    assert frontal_score([*eyes, (120.0, 125.0), *mouth]) == pytest.approx(1.0)
    assert frontal_score([*eyes, (140.0, 125.0), *mouth]) == pytest.approx(0.5)
    assert frontal_score([*eyes, (165.0, 125.0), *mouth]) == 0.0


@given(st.floats(0, 400), st.floats(0, 400), st.floats(0, 1e5), st.floats(-50, 50))
def test_quality_and_its_parts_lie_in_zero_to_one(w, h, variance, nose_dx):
    landmarks = [(10.0, 10.0), (30.0, 10.0), (20.0 + nose_dx, 20.0), (12.0, 30.0), (28.0, 30.0)]
    quality = face_quality((0.0, 0.0, w, h), landmarks, variance)
    for value in (quality.size, quality.sharpness, quality.frontal, quality.overall):
        assert 0.0 <= value <= 1.0


def test_quality_falls_with_blur_and_with_size():
    landmarks = [(10.0, 10.0), (30.0, 10.0), (20.0, 20.0), (12.0, 30.0), (28.0, 30.0)]
    sharp = face_quality((0, 0, 100, 120), landmarks, 400.0).overall
    assert face_quality((0, 0, 100, 120), landmarks, 10.0).overall < sharp
    assert face_quality((0, 0, 30, 36), landmarks, 400.0).overall < sharp
    assert face_quality((0, 0, 15, 18), landmarks, 400.0).overall == 0.0  # below MTCNN's smallest face


# -- real MTCNN weights on real photographs -----------------------------------------------------------------
def test_real_mtcnn_finds_the_astronauts_face_where_it_is(detector):
    faces = detector.detect(photo("astronaut"))
    assert len(faces) == 1
    found = faces[0]
    assert found.score > 0.99
    assert iou(found.box, ASTRONAUT_FACE) > 0.6
    left_eye, right_eye, nose, mouth_left, mouth_right = found.landmarks
    assert left_eye[0] < nose[0] < right_eye[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    x1, y1, x2, y2 = ASTRONAUT_FACE
    assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in found.landmarks)


@pytest.mark.parametrize("name", ["chelsea", "coffee"])  # a cat, a cup of coffee
def test_real_mtcnn_finds_no_face_where_there_is_none(detector, name):
    assert detector.detect(photo(name)) == []


# -- the family ---------------------------------------------------------------------------------------------
def test_person_event_gets_its_face_box_quality_and_a_tagged_unit_embedding(face, face_dir):
    result = face.infer(ModelInput(photo("astronaut"), ASTRONAUT_PERSON))
    assert result["face_visible"] is True and result["face_count"] == 1
    best = result["best"]
    assert iou(best["box"], ASTRONAUT_FACE) > 0.6
    assert len(best["landmarks"]) == 5 and 0.5 < best["quality"] <= 1.0
    assert len(result["embedding"]) == result["dim"] == EMBEDDING_DIM
    assert math.sqrt(sum(x * x for x in result["embedding"])) == pytest.approx(1.0, abs=2e-3)
    assert result["embedding_model"] == embedder_model_id(face_dir)
    assert json.loads(json.dumps(result)) == result


def test_no_face_means_not_visible_and_no_embedding(face):
    result = face.infer(ModelInput(photo("chelsea"), (0.0, 0.0, 451.0, 300.0)))
    assert result == {**result, "face_visible": False, "face_count": 0, "faces": [], "best": None,
                      "embedding": None, "embedding_model": None}


def test_a_face_outside_the_head_region_is_not_searched(face):
    legs_only = (150.0, 380.0, 350.0, 512.0)  # a box over her lower body: its head region is far below the face
    assert face.infer(ModelInput(photo("astronaut"), legs_only))["face_visible"] is False


def test_a_given_face_box_widens_the_search(face):
    legs_only = (150.0, 380.0, 350.0, 512.0)
    result = face.infer(ModelInput(photo("astronaut"), legs_only, face_bbox=(170.0, 50.0, 280.0, 185.0)))
    assert result["face_visible"] is True


def test_the_same_face_embeds_the_same_and_a_blurred_one_scores_lower(face):
    sharp = face.analyse(photo("astronaut"))
    assert face.analyse(photo("astronaut"))["embedding"] == sharp["embedding"]
    blurred = face.analyse(photo("astronaut").filter(ImageFilter.GaussianBlur(3)))
    assert blurred["best"]["quality"] < sharp["best"]["quality"] - 0.2


# -- weights and the embedding model id ---------------------------------------------------------------------
def test_model_id_is_the_file_name_and_its_content_hash(face_dir, tiny_models_dir):
    file = embedder_file(face_dir)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:12]
    assert embedder_model_id(face_dir) == f"{file.name}:{digest}"
    other = tiny_face_dir(tiny_models_dir, name="face-seed-1", seed=1)
    assert embedder_model_id(other) != embedder_model_id(face_dir)


def test_embedder_state_drops_the_classifier_and_refuses_other_networks():
    own = {"conv.weight", "last_bn.running_mean"}
    real = {"conv.weight": 1, "last_bn.running_mean": 2, "logits.weight": 3, "logits.bias": 4}
    assert set(embedder_state(real, own)) == own
    assert set(embedder_state({"state_dict": {f"module.{k}": v for k, v in real.items()}}, own)) == own
    with pytest.raises(ValueError, match="missing"):
        embedder_state({"conv.weight": 1}, own)
    with pytest.raises(TypeError, match="state dict"):
        embedder_state([1, 2], own)


def test_weight_files_name_the_embedder_and_the_three_mtcnn_nets(face_dir):
    names = sorted(p.name for p in FaceModel.weight_files(face_dir))
    assert names == sorted([embedder_file(face_dir).name, "onet.pt", "pnet.pt", "rnet.pt"])
    assert FaceModel.estimate_bytes(face_dir, "cpu") > 80 * 2**20  # InceptionResnetV1 in float32


def test_unloaded_family_says_so(face_dir):
    model = FaceModel(face_dir, "cpu")
    with pytest.raises(RuntimeError, match="not loaded"):
        model.analyse(photo("astronaut"))


def test_a_large_frame_searched_at_a_smaller_scale_is_answered_in_its_own_pixels(face):
    large = photo("astronaut").resize((1536, 1536), Image.Resampling.BICUBIC)  # three times the photo
    found = face.detect(large)
    assert len(found) == 1
    scaled_back = tuple(v / 3 for v in found[0].box)
    assert iou(scaled_back, ASTRONAUT_FACE) > 0.6
