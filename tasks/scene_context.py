"""The scene around one event, read once at assembly: the camera's local time and day of week, day or night (the
sun's position where the camera's place is known, else the frame's brightness), the weather CLIP sees, and the
picture's quality against the camera's own baseline, to notice a covered, blurred or frozen picture."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import redis
from astral import Observer
from astral.sun import elevation

from tasks.redis_retry import refusal
from workers.frame_quality import FrameQuality
from workers.settings import CameraPlace, CameraSettings

log = logging.getLogger(__name__)

DEFAULTS = CameraSettings.model_construct()  # the documented defaults, without reading the environment

# Sun elevation (degrees) bands: civil twilight ends at -6; below it is night, above +6 is full day.
NIGHT_BELOW = -6.0
DAY_FROM = 6.0
# From the frame alone: a grey picture is an infrared night picture; a dark one is night or low light.
GREY_BELOW = 0.03
NIGHT_BRIGHTNESS = 0.15
LOW_LIGHT_BRIGHTNESS = 0.3
WEATHER_CONFIDENCE = 0.35  # CLIP's weather guess below this is not stated
LEARN_RATE = 0.1  # how fast a camera's picture baseline follows its frames (a moving average)
FLAGGED_LEARN_RATE = 0.02  # ... and frames flagged as tampered (a long-covered lens stays flagged a while)


def local_moment(timestamp: datetime, timezone: str) -> datetime:
    """The instant in the camera's time zone."""
    return timestamp.astimezone(ZoneInfo(timezone))


def sun_light(moment: datetime, latitude: float, longitude: float) -> tuple[str, float]:
    """("day" | "dawn" | "dusk" | "night", the sun's elevation in degrees) at that place and instant."""
    observer = Observer(latitude=latitude, longitude=longitude)
    height = float(elevation(observer, moment))
    if height < NIGHT_BELOW:
        return "night", height
    if height >= DAY_FROM:
        return "day", height
    rising = float(elevation(observer, moment + timedelta(minutes=10))) > height
    return ("dawn" if rising else "dusk"), height


def frame_light(quality: FrameQuality) -> str:
    """"day" | "low light" | "night" from the picture alone (an infrared, grey picture is night)."""
    if quality.colourfulness < GREY_BELOW or quality.brightness < NIGHT_BRIGHTNESS:
        return "night"
    return "low light" if quality.brightness < LOW_LIGHT_BRIGHTNESS else "day"


def light_at(moment: datetime, place: CameraPlace, quality: FrameQuality | None) -> dict[str, Any]:
    """The light at the camera and where that answer comes from; {} when neither the place nor the frame tells."""
    if place.latitude is not None and place.longitude is not None:
        light, height = sun_light(moment, place.latitude, place.longitude)
        return {"light": light, "light_source": "sun position", "sun_elevation": round(height, 1)}
    if quality is not None:
        return {"light": frame_light(quality), "light_source": "frame brightness"}
    return {}


def weather_of(clip: Any) -> dict[str, Any] | None:
    """CLIP's weather guess when it is confident enough to state."""
    weather = clip.get("weather") if isinstance(clip, dict) else None
    if not isinstance(weather, dict) or not isinstance(weather.get("score"), (int, float)):
        return None
    if weather["score"] < WEATHER_CONFIDENCE:
        return None
    return {"condition": weather.get("label"), "confidence": weather["score"], "source": "clip"}


def sharpness_norm(quality: FrameQuality) -> float:
    """Sharpness with brightness divided out (edges scale with the light: a dark frame is not a blurred one)."""
    return quality.sharpness / max(quality.brightness, 0.05) ** 2


class PictureBaseline:
    """Each camera's usual picture, one per regime (colour by day, grey infrared by night), as a Redis hash:
    picture:baseline:<camera>:<regime> {frames, brightness, sharpness, fingerprint, seen_at}. No TTL beyond
    `ttl_seconds` after the last frame."""

    def __init__(self, client: redis.Redis, settings: CameraSettings = DEFAULTS, ttl_seconds: float = 30 * 24 * 3600,
                 prefix: str = "picture:baseline"):
        self.client = client
        self.settings = settings
        self.ttl_seconds = int(ttl_seconds)
        self.prefix = prefix

    def key(self, camera_id: str, quality: FrameQuality) -> str:
        regime = "grey" if quality.colourfulness < GREY_BELOW else "colour"
        return f"{self.prefix}:{camera_id}:{regime}"

    def compare_and_learn(self, camera_id: str, quality: FrameQuality, seen_at: datetime) -> list[str]:
        """Signs of tampering against the camera's usual picture (empty: none, or too few frames yet); the frame
        then joins the baseline."""
        key = self.key(camera_id, quality)
        raw = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
               for k, v in self.client.hgetall(key).items()}
        frames = int(raw.get("frames", 0))
        signs = self.signs(raw, frames, quality, seen_at)
        same_frame = raw.get("fingerprint") == quality.fingerprint and raw.get("seen_at") == seen_at.isoformat()
        if not same_frame:  # several detections on one frame teach the baseline once
            rate = FLAGGED_LEARN_RATE if signs else (LEARN_RATE if frames >= self.settings.quality_min_frames
                                                      else 1.0 / (frames + 1))
            usual_brightness = float(raw.get("brightness", quality.brightness))
            usual_sharpness = float(raw.get("sharpness", sharpness_norm(quality)))
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={
                    "frames": frames + 1,
                    "brightness": usual_brightness + rate * (quality.brightness - usual_brightness),
                    "sharpness": usual_sharpness + rate * (sharpness_norm(quality) - usual_sharpness),
                    "fingerprint": quality.fingerprint, "seen_at": seen_at.isoformat(),
                })
                pipe.expire(key, self.ttl_seconds)
                pipe.execute()
        return signs

    def signs(self, usual: dict[str, str], frames: int, quality: FrameQuality, seen_at: datetime) -> list[str]:
        found = []
        if usual.get("fingerprint") == quality.fingerprint and usual.get("seen_at"):
            gap = (seen_at - datetime.fromisoformat(usual["seen_at"])).total_seconds()
            if gap >= self.settings.quality_frozen_seconds:
                found.append(f"the same picture as {gap:.0f} s earlier: the feed may be frozen")
        if frames < self.settings.quality_min_frames:
            return found
        brightness, sharpness = float(usual["brightness"]), float(usual["sharpness"])
        if brightness > 0.1 and quality.brightness < self.settings.quality_dark_ratio * brightness:
            found.append(f"much darker than usual (brightness {quality.brightness:.0%} against {brightness:.0%}): "
                         f"lens covered?")
        if sharpness > 0 and sharpness_norm(quality) < self.settings.quality_blur_ratio * sharpness:
            found.append(f"much blurrier than usual (sharpness {sharpness_norm(quality) / sharpness:.0%} of usual): "
                         f"lens sprayed, dirty or out of focus?")
        return found


def describe_scene(event: Any, clip: Any, settings: CameraSettings, baseline: PictureBaseline | None,
                   unavailable: dict[str, str]) -> dict[str, Any]:
    """The scene_context section: local time, light, weather, picture quality and tampering signs."""
    place = settings.place(event.camera_id)
    try:
        moment = local_moment(event.timestamp, place.timezone or "UTC")
        context: dict[str, Any] = {
            "local_time": moment.isoformat(timespec="seconds"), "timezone": place.timezone,
            "day_of_week": moment.strftime("%A"),
        } | light_at(moment, place, event.quality)
    except (OverflowError, ValueError) as exc:  # an instant at the edge of the calendar has no local time
        log.info("no local time for %s: %s", event.timestamp, exc)
        context = light_at(event.timestamp, CameraPlace(), event.quality)
    weather = weather_of(clip)
    if weather is not None:
        context["weather"] = weather
    if event.quality is not None:
        context["picture"] = event.quality.model_dump(exclude={"fingerprint"})
        if baseline is not None:
            try:
                signs = baseline.compare_and_learn(event.camera_id, event.quality, event.timestamp)
            except redis.RedisError as exc:
                if refusal(exc) == "unreachable":
                    raise  # Redis restarting, not the baseline: the assembly is run again (tasks/assemble.py)
                log.warning("picture baseline unavailable: %s", exc)  # full, or broken: the event says so
                unavailable["picture_baseline"] = f"error: {exc}"
            else:
                context["tampering"] = {"suspected": bool(signs), "signs": signs}
    return context
