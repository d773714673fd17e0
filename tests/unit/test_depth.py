"""Depth Anything proximity: pure depth rules, and the wrapper through its real loader on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from workers.models.base import ModelInput
from workers.models.depth import (
    FLAT_FRAME_DEPTH,
    PROXIMITY_CLASSES,
    DepthModel,
    box_relative_depth,
    proximity_class,
    relative_depth_map,
)

PERSON_BOX = (40.0, 30.0, 90.0, 110.0)


@pytest.mark.parametrize(
    ("relative_depth", "expected"),
    [
        (0.0, "very_close"), (0.19, "very_close"), (0.2, "close"), (0.39, "close"), (0.4, "medium"),
        (0.64, "medium"), (0.65, "far"), (1.0, "far"),
    ],
)
def test_proximity_classes_follow_the_threshold_table(relative_depth, expected):
    assert proximity_class(relative_depth) == expected


def test_threshold_table_is_ordered():
    bounds = [bound for bound, _ in PROXIMITY_CLASSES]
    assert bounds == sorted(bounds) and all(0.0 < b < 1.0 for b in bounds)


@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_farther_is_never_a_nearer_class(a, b):
    order = ["very_close", "close", "medium", "far"]
    near, far = sorted((a, b))
    assert order.index(proximity_class(near)) <= order.index(proximity_class(far))


def test_larger_inverse_depth_is_nearer():
    inverse = np.array([[10.0, 5.0], [0.0, 2.5]])
    assert relative_depth_map(inverse).tolist() == [[0.0, 0.5], [1.0, 0.75]]


def test_flat_prediction_is_mid_range():
    assert (relative_depth_map(np.full((3, 4), 7.0)) == FLAT_FRAME_DEPTH).all()


def test_box_depth_is_the_median_inside_the_box():
    depth = np.zeros((10, 10))
    depth[2:6, 3:8] = np.arange(20).reshape(4, 5) / 19.0
    assert box_relative_depth(depth, (3, 2, 8, 6)) == pytest.approx(np.median(np.arange(20) / 19.0))
    assert box_relative_depth(depth, (-50, -50, 500, 500)) == 0.0  # clamped to the frame; mostly zeros


@pytest.fixture(scope="module")
def model(tiny_model) -> DepthModel:
    wrapper = DepthModel(tiny_model("depth"), "cpu")
    wrapper.load()
    yield wrapper
    wrapper.unload()


@pytest.fixture(scope="module")
def frame() -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))


def test_depth_map_covers_the_frame_from_near_to_far(model, frame):
    depth = model.depth_map(frame)
    assert depth.shape == (frame.height, frame.width)
    assert depth.min() == pytest.approx(0.0) and depth.max() == pytest.approx(1.0)


def test_infer_reports_the_box_depth_and_its_class(model, frame):
    result = model.infer(ModelInput(frame, PERSON_BOX))
    assert set(result) == {"relative_depth", "proximity"}
    assert isinstance(result["relative_depth"], float) and 0.0 <= result["relative_depth"] <= 1.0
    expected = box_relative_depth(model.depth_map(frame), PERSON_BOX)
    assert result["relative_depth"] == round(expected, 4)
    assert result["proximity"] == proximity_class(expected)
    assert json.loads(json.dumps(result)) == result


def test_infer_before_load_is_an_error(frame):
    with pytest.raises(RuntimeError, match="not loaded"):
        DepthModel("unused", "cpu").infer(ModelInput(frame, PERSON_BOX))
