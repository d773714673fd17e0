"""The scene around the event as the prompt states it: local time and day of week, the light and where that
answer comes from, the weather CLIP sees, and signs that someone tampered with the camera."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from prompt_formatting.declared import Area, ResultShape, assembly_section, result_section
from prompt_formatting.facts import FactLine, Section
from prompt_formatting.untrusted import clean_text, quoted
from prompt_formatting.values import entries, mapping, percent

LIGHT_SOURCES = {"sun position": "from the sun's position at the camera",
                 "frame brightness": "from the picture's brightness"}
LIGHTS = ("day", "dawn", "dusk", "night", "low light")


def local_time(context: dict) -> str | None:
    """'Monday 2026-01-19 03:14 (Europe/Berlin)' from the context's local time, or None."""
    text = context.get("local_time")
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    zone = clean_text(context.get("timezone"), "name")
    return f"{moment.strftime('%A %Y-%m-%d %H:%M')}" + (f" ({zone})" if zone else "")


def light(context: dict) -> str | None:
    """'night (from the sun's position at the camera)', or None when the context does not say."""
    value = context.get("light")
    if value not in LIGHTS:
        return None
    source = LIGHT_SOURCES.get(context.get("light_source"))
    return f"{value} ({source})" if source else value


class Weather(ResultShape):
    condition: str | None
    confidence: float
    source: str | None = None


class Tampering(ResultShape):
    suspected: bool
    signs: list[str]


@result_section("scene_context", model=None)
class SceneContextResult(ResultShape):
    """Assembled for every event (no model of its own): local time, light and where that answer comes from,
    CLIP's weather, the picture's figures and tampering signs against the camera's usual picture."""

    local_time: str | None = Field(None, description="ISO 8601 in the camera's time zone")
    timezone: str | None = None
    day_of_week: str | None = None
    light: str | None = Field(None, description="day, dawn, dusk, night or low light")
    light_source: str | None = Field(None, description="sun position or frame brightness")
    sun_elevation: float | None = None
    weather: Weather | None = None
    picture: dict[str, float] | None = Field(None, description="brightness, sharpness, noise, colourfulness")
    tampering: Tampering | None = None


@assembly_section("scene_context", purpose="local time, light, weather and picture quality", area=Area.CONTEXT,
                  order=5)
def scene_context_section(context: Any) -> Section:
    """Local time, light, weather and tampering signs; empty when the context has none of them."""
    context = mapping(context)
    lines = []
    when = local_time(context)
    if when:
        lines.append(FactLine(f"- **Local time**: {when}"))
    shown_light = light(context)
    if shown_light:
        lines.append(FactLine(f"- **Light**: {shown_light}"))
    weather = mapping(context.get("weather"))
    condition = quoted(weather.get("condition"), "label")
    if condition:
        sure = percent(weather.get("confidence"))
        lines.append(FactLine(f"- **Weather and visibility**: {condition}" + (f" ({sure} by CLIP)" if sure else "")))
    tampering = mapping(context.get("tampering"))
    signs = [quoted(sign, "message") for sign in entries(tampering.get("signs"))]
    signs = [sign for sign in signs if sign]
    if tampering.get("suspected") and signs:
        lines.append(FactLine("- **⚠️ POSSIBLE CAMERA TAMPERING**: the picture changed suddenly against this camera's "
                              "usual", 0))
        lines.extend(FactLine(f"  - {sign}") for sign in signs)
    return Section("### Scene Context", tuple(lines))


def calibration_light(context: Any) -> str | None:
    """The calibration's light line: what "daytime" and "at night" mean for this event, or None."""
    context = mapping(context)
    shown = light(context)
    if shown is None:
        return None
    when = local_time(context)
    return f"Light at this camera now: {shown}" + (f", local time {when}" if when else "") + \
        '. Read "daytime" and "at night" below by it.'
