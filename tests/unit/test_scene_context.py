"""The scene around an event: local time and day of week, day or night (sun or picture), weather, and a sudden
change in a camera's picture flagged as possible tampering, on real photographs (scikit-image's data)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image, ImageFilter
from skimage import data

from prompt_formatting.scene_context import calibration_light, scene_context_section
from tasks.scene_context import PictureBaseline, describe_scene, frame_light, sun_light
from tasks.schemas import EventSummary
from workers.frame_quality import measure
from workers.settings import CameraSettings

ASTRONAUT = Image.fromarray(data.astronaut())
COFFEE = Image.fromarray(data.coffee())
BERLIN = {"front_door": {"timezone": "Europe/Berlin", "latitude": 52.52, "longitude": 13.40}}


def event(camera: str, when: datetime, image: Image.Image | None = ASTRONAUT) -> EventSummary:
    return EventSummary(event_id="sc", camera_id=camera, timestamp=when, detection_type="person", confidence=0.9,
                        bbox=(1, 1, 50, 50), quality=measure(image) if image is not None else None)


def test_the_sun_tells_day_dusk_and_night_in_berlin_in_december():
    day = datetime(2026, 12, 4, 11, 0, tzinfo=UTC)  # 12:00 local
    assert sun_light(day, 52.52, 13.40)[0] == "day"
    assert sun_light(datetime(2026, 12, 4, 15, 10, tzinfo=UTC), 52.52, 13.40)[0] == "dusk"  # sunset ~15:50 local
    assert sun_light(datetime(2026, 12, 4, 6, 30, tzinfo=UTC), 52.52, 13.40)[0] == "dawn"
    assert sun_light(datetime(2026, 12, 4, 1, 14, tzinfo=UTC), 52.52, 13.40)[0] == "night"


def test_without_a_place_the_picture_tells_the_light():
    assert frame_light(measure(ASTRONAUT)) == "day"
    assert frame_light(measure(ASTRONAUT.convert("L"))) == "night", "a grey, infrared picture"
    assert frame_light(measure(ASTRONAUT.point(lambda v: v * 0.2))) == "night"


def test_a_camera_with_a_time_zone_shows_local_time_day_of_week_and_night():
    cameras = CameraSettings(places=BERLIN)
    context = describe_scene(event("front_door", datetime(2026, 1, 19, 2, 14, tzinfo=UTC)), None, cameras, None, {})
    assert context["local_time"] == "2026-01-19T03:14:00+01:00" and context["day_of_week"] == "Monday"
    assert (context["light"], context["light_source"]) == ("night", "sun position")
    text = scene_context_section(context).text
    assert "- **Local time**: Monday 2026-01-19 03:14 (Europe/Berlin)" in text
    assert "- **Light**: night (from the sun's position at the camera)" in text
    assert calibration_light(context).startswith("Light at this camera now: night (from the sun's position")


def test_a_camera_without_a_place_says_the_light_comes_from_the_picture():
    context = describe_scene(event("garden", datetime(2026, 1, 19, 12, 0, tzinfo=UTC)), None, CameraSettings(),
                             None, {})
    assert (context["timezone"], context["light"], context["light_source"]) == ("UTC", "day", "frame brightness")


def test_weather_is_stated_only_when_clip_is_sure_enough():
    clip = {"weather": {"label": "rain", "score": 0.61, "ranked": []}}
    context = describe_scene(event("garden", datetime.now(UTC)), clip, CameraSettings(), None, {})
    assert context["weather"] == {"condition": "rain", "confidence": 0.61, "source": "clip"}
    assert '- **Weather and visibility**: "rain" (61% by CLIP)' in scene_context_section(context).text
    unsure = describe_scene(event("garden", datetime.now(UTC)), {"weather": {"label": "fog", "score": 0.2}},
                            CameraSettings(), None, {})
    assert "weather" not in unsure


@pytest.fixture
def pictures(redis_client):
    return PictureBaseline(redis_client, CameraSettings(quality_min_frames=5))


def learn(pictures: PictureBaseline, image: Image.Image, count: int, start: datetime) -> datetime:
    """`count` frames of the camera's usual picture, a minute apart (each a little different, as a live feed is)."""
    for i in range(count):
        frame = image.rotate(0.5 * (i % 3 - 1))
        assert pictures.compare_and_learn("porch", measure(frame), start + timedelta(minutes=i)) == []
    return start + timedelta(minutes=count)


def test_a_sudden_blur_on_a_camera_is_flagged(pictures):
    later = learn(pictures, ASTRONAUT, 6, datetime(2026, 1, 1, tzinfo=UTC))
    signs = pictures.compare_and_learn("porch", measure(ASTRONAUT.filter(ImageFilter.GaussianBlur(8))), later)
    assert len(signs) == 1 and signs[0].startswith("much blurrier than usual")


def test_a_covered_lens_is_flagged_as_darker_not_blurred(pictures):
    later = learn(pictures, COFFEE, 6, datetime(2026, 1, 1, tzinfo=UTC))
    signs = pictures.compare_and_learn("porch", measure(COFFEE.point(lambda v: v * 0.1)), later)
    assert len(signs) == 1 and signs[0].startswith("much darker than usual")


def test_the_same_picture_seconds_later_is_a_frozen_feed_but_two_detections_on_one_frame_are_not(pictures):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    frame = measure(ASTRONAUT)
    assert pictures.compare_and_learn("porch", frame, start) == []
    assert pictures.compare_and_learn("porch", frame, start) == [], "a second detection on the same frame"
    signs = pictures.compare_and_learn("porch", frame, start + timedelta(seconds=30))
    assert signs == ["the same picture as 30 s earlier: the feed may be frozen"]


def test_an_ordinary_new_frame_is_not_flagged(pictures):
    later = learn(pictures, ASTRONAUT, 6, datetime(2026, 1, 1, tzinfo=UTC))
    assert pictures.compare_and_learn("porch", measure(ASTRONAUT.rotate(1.0)), later) == []


def test_tampering_reaches_the_prompt_as_a_warning(pictures):
    later = learn(pictures, ASTRONAUT, 6, datetime(2026, 1, 1, tzinfo=UTC))
    blurred = event("porch", later, ASTRONAUT.filter(ImageFilter.GaussianBlur(8)))
    context = describe_scene(blurred, None, CameraSettings(quality_min_frames=5), pictures, {})
    assert context["tampering"]["suspected"] is True
    text = scene_context_section(context).text
    assert "⚠️ POSSIBLE CAMERA TAMPERING" in text and "much blurrier than usual" in text
