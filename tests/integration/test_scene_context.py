"""The scene around an event through the real pool: a camera's local time and night from its place, and a
sudden blur of a camera's picture flagged as possible tampering."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageFilter
from skimage import data

from scripts.fixtures.sample_events import b64, person_event

pytestmark = pytest.mark.integration


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def test_a_camera_with_a_place_shows_local_time_day_of_week_and_night(pool):
    event = person_event("sc-night") | {"camera_id": "night_porch", "timestamp": "2026-01-19T02:14:00Z"}
    result = pool.client.enrich(event, timeout=300)
    context = result["enrichment"]["scene_context"]
    assert context["local_time"] == "2026-01-19T03:14:00+01:00" and context["day_of_week"] == "Monday"
    assert (context["light"], context["light_source"]) == ("night", "sun position")
    assert "- **Local time**: Monday 2026-01-19 03:14 (Europe/Berlin)" in result["prompt"]
    assert "Light at this camera now: night (from the sun's position at the camera)" in result["prompt"]


def test_a_sudden_blur_on_a_camera_is_flagged_in_the_result_and_the_prompt(pool):
    photo = Image.fromarray(data.coffee())  # 600x400
    box = [100, 60, 500, 380]
    for i in range(3):  # the camera's usual picture: three live frames, each a little different
        usual = {"event_id": f"sc-usual-{i}", "camera_id": "porch_cam", "timestamp": f"2026-01-19T12:0{i}:00Z",
                 "detection_type": "cat", "confidence": 0.9, "bbox": box,
                 "image": b64(jpeg(photo.rotate(0.5 * (i - 1))))}
        result = pool.client.enrich(usual, timeout=300)
        assert result["enrichment"]["scene_context"]["tampering"]["suspected"] is False, result["enrichment"]
    blurred = {"event_id": "sc-blurred", "camera_id": "porch_cam", "timestamp": "2026-01-19T12:05:00Z",
               "detection_type": "cat", "confidence": 0.9, "bbox": box,
               "image": b64(jpeg(photo.filter(ImageFilter.GaussianBlur(8))))}
    result = pool.client.enrich(blurred, timeout=300)
    tampering = result["enrichment"]["scene_context"]["tampering"]
    assert tampering["suspected"] is True and tampering["signs"][0].startswith("much blurrier than usual")
    assert "⚠️ POSSIBLE CAMERA TAMPERING" in result["prompt"]
