"""Scene sections: Florence-2's description, security objects and visible text; CLIP's anomaly and tags; depth."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from prompt_formatting.declared import Area, ResultShape, model_section, result_section
from prompt_formatting.facts import FactLine, Section
from prompt_formatting.untrusted import MAX_LIST_ITEMS, capped_list, clean_text, quote, quoted
from prompt_formatting.values import count, distinct, entries, mapping, number, percent
from prompt_formatting.vocabulary import SCENE_TAG_LIMIT, SCENE_TAG_MIN_SCORE, SCENE_TAG_PROMPTS, is_high_risk_object

# Florence-2 result key -> subheading, in print order after the description.
LABEL_GROUPS: tuple[tuple[str, str], ...] = (
    ("security_objects", "Objects Detected"),
    ("text_regions", "Visible Text"),
    ("dense_regions", "Region Captions"),
)
# Florence-2's raw answers are keyed by their task token ({"<OCR_WITH_REGION>": {...}}).
TASK_TOKEN = re.compile(r"<[A-Z_]+>")

PROXIMITY_WORDS: dict[str, str] = {
    "very_close": "very close",
    "close": "close",
    "medium": "medium distance",
    "far": "far",
}


def _untask(value: Any) -> Any:
    """Florence-2's post-processed answer without its task-token wrapper, if it has one."""
    if isinstance(value, dict) and len(value) == 1:
        (key, inner), = value.items()
        if isinstance(key, str) and TASK_TOKEN.fullmatch(key):
            return inner
    return value


def florence_of(scene: Any) -> dict:
    """Florence-2's dict from the enrichment's scene section ({"florence": ..., "clip": ...}) or given directly."""
    scene = mapping(scene)
    return mapping(scene["florence"]) if "florence" in scene else scene


def _caption(florence: dict) -> str | None:
    """Our `caption`, or the seed's `scene` (a string, or Florence's {task: text} answer)."""
    for key in ("caption", "scene"):
        value = _untask(florence.get(key))
        if isinstance(value, str) and clean_text(value, "caption"):
            return quoted(value, "caption")
    return None


def _labels(group: Any) -> list[str]:
    group = mapping(_untask(group))
    raw = entries(group.get("labels")) or entries(group.get("bboxes_labels"))
    return [text for text in (clean_text(v) for v in raw) if text]


# Ours nests Florence-2 under scene.florence; the scene key may also hold Florence's dict itself.
class Detections(ResultShape):
    labels: list[str]
    bboxes: list[list[float]] = Field(description="[x1, y1, x2, y2] per label, frame pixels")


class TextRegions(ResultShape):
    labels: list[str]
    quad_boxes: list[list[float]] = Field(description="[x1, y1, ... x4, y4] per label, frame pixels")


@result_section("scene.florence", model="florence")
class FlorenceResult(ResultShape):
    """Seed: scene (the <MORE_DETAILED_CAPTION> text), security_objects, text_regions."""

    scene: str
    security_objects: Detections
    text_regions: TextRegions
    dense_regions: Detections | None = Field(None, description="ours, with FLORENCE_DENSE_REGIONS=1")


@model_section(
    "florence", purpose="scene description, security objects and visible text", area=Area.CONTEXT, order=50,
    paths=(("scene", "florence"), ("scene",), ("florence",)),
)
def florence_section(scene: Any) -> Section:
    """Scene description, detected objects (high-risk ones flagged) and text, from the scene section or Florence."""
    florence = florence_of(scene)
    lines = []
    caption = _caption(florence)
    if caption:
        lines.append(FactLine(f"\n**Scene Description:**\n{caption}"))
    for key, title in LABEL_GROUPS:
        found = _labels(florence.get(key))
        if not found:
            continue
        shown = capped_list(distinct([quote(text) for text in found]))
        facts = min(len(distinct(found)), MAX_LIST_ITEMS)  # the labels printed
        lines.append(FactLine(f"\n**{title}:** {', '.join(shown)}", facts))
        if key == "security_objects":
            risky = distinct([quote(text) for text in found if is_high_risk_object(text)])
            if risky:
                lines.append(FactLine(f"- **HIGH RISK OBJECTS**: {', '.join(capped_list(risky))}", 0))
    return Section("### Scene Analysis (Florence-2)", tuple(lines))


def format_florence_scene_context(scene: dict | None) -> str:
    """The Florence-2 scene section, or "" when it holds nothing (seed or our shape; see florence_section)."""
    return florence_section(scene).text


class SceneTag(ResultShape):
    label: str
    score: float


class ClipWeather(ResultShape):
    """CLIP's zero-shot weather and visibility: the best label, its score, and every label ranked."""

    label: str
    score: float
    ranked: list[SceneTag] | None = None


class SceneAnomaly(ResultShape):
    score: float | None = Field(description="null while the camera's baseline is too small")
    unusual: bool | None
    baseline_count: int


@result_section("scene.clip", model="clip")
class ClipResult(ResultShape):
    """Ours: the frame's and the crop's CLIP embeddings, the best scene tags, and the camera's scene anomaly."""

    frame_embedding: list[float]
    crop_embedding: list[float]
    dim: int
    tags: list[SceneTag]
    weather: ClipWeather | None = None
    anomaly: SceneAnomaly | None = None
    embedding_model: str | None = Field(None, description="which CLIP made the embeddings: vectors of another never meet")


@model_section(
    "clip", purpose="scene anomaly for this camera and scene tags", area=Area.CONTEXT, order=60,
    paths=(("scene", "clip"), ("clip",)),
)
def clip_section(clip: Any) -> Section:
    """Whether the frame is unusual for its camera (against the camera's baseline) and its zero-shot scene tags."""
    clip = mapping(clip)
    lines = []
    anomaly = mapping(clip.get("anomaly"))
    score, baseline = number(anomaly.get("score")), count(anomaly.get("baseline_count"))
    unusual = anomaly.get("unusual")
    if baseline and isinstance(unusual, bool) and score is not None and 0.0 <= score <= 1.0:
        verdict = "unusual for this camera" if unusual else "typical for this camera"
        frames = "frame" if baseline == 1 else "frames"
        lines.append(FactLine(
            f"- **Scene anomaly**: {verdict} (anomaly score {score:.2f}, compared with {baseline} earlier {frames})"))
    tags = []
    for entry in entries(clip.get("tags")):
        entry = mapping(entry)
        text, score = clean_text(entry.get("label")), number(entry.get("score"))
        if text and (score is None or score >= SCENE_TAG_MIN_SCORE):
            tags.append((text, score))
    tags.sort(key=lambda t: -(t[1] if t[1] is not None else 0.0))
    shown = []
    for text, score in tags[:SCENE_TAG_LIMIT]:
        name = text if text in SCENE_TAG_PROMPTS else quote(text)
        shown.append(f"{name} ({percent(score)})" if percent(score) else name)
    if shown:
        lines.append(FactLine(f"- **Scene tags**: {', '.join(shown)}", len(shown)))
    return Section("### Scene Context (CLIP)", tuple(lines))


def format_clip_scene_context(scene: dict | None) -> str:
    """The CLIP scene section (anomaly and tags) from the scene section or CLIP's dict, or "" without either."""
    scene = mapping(scene)
    return clip_section(scene["clip"] if "clip" in scene else scene).text


def _metres(distance: float) -> str:
    return f"{distance:.1f} m" if distance < 10 else f"{distance:.0f} m"


@result_section("depth", model="depth")
class DepthResult(ResultShape):
    """Relative depth in the box (0 near .. 1 far), its class, and approximate metres."""

    relative_depth: float
    proximity: str
    distance_m: float | None = None


@model_section("depth", purpose="distance from the camera", area=Area.CONTEXT, order=40)
def depth_section(depth: Any) -> Section:
    """How far the detection is from the camera: proximity in words, approximate metres, relative depth."""
    depth = mapping(depth)
    raw = depth.get("proximity")
    proximity = PROXIMITY_WORDS.get(raw) if isinstance(raw, str) else None
    proximity = proximity or quoted(raw)
    relative = number(depth.get("relative_depth"))
    relative = relative if relative is not None and 0.0 <= relative <= 1.0 else None
    distance = number(depth.get("distance_m"))
    distance = distance if distance is not None and distance >= 0.0 else None
    parts = [proximity] if proximity else []
    if distance is not None:
        parts.append(f"about {_metres(distance)} (approximate)")
    words = ", ".join(parts)
    scale = f"relative depth {relative:.2f}, where 0 is nearest and 1 farthest" if relative is not None else None
    if words and scale:
        line = f"- **Distance from camera**: {words}" + (f"; {scale}" if distance is not None else f" ({scale})")
    elif words or scale:
        line = f"- **Distance from camera**: {words or scale}"
    else:
        return Section("")
    facts = 1 + (1 if distance is not None and (proximity or scale) else 0)
    return Section("### Proximity (Depth Estimation)", (FactLine(line, facts),))


def format_depth_context(depth: dict | None) -> str:
    """The proximity section, or "" without a depth result."""
    return depth_section(depth).text
