"""Scene sections: Florence-2's description, security objects and visible text; depth proximity."""

from __future__ import annotations

from typing import Any

from prompt_formatting.facts import FactLine, Section
from prompt_formatting.values import distinct, entries, label, mapping, number, prose

# Object labels containing any of these words are flagged (seed list).
HIGH_RISK_OBJECT_WORDS: tuple[str, ...] = ("weapon", "knife", "crowbar", "tool")

# Florence-2 result key -> subheading, in print order after the description.
LABEL_GROUPS: tuple[tuple[str, str], ...] = (
    ("security_objects", "Objects Detected"),
    ("text_regions", "Visible Text"),
    ("dense_regions", "Region Captions"),
)

PROXIMITY_WORDS: dict[str, str] = {
    "very_close": "very close",
    "close": "close",
    "medium": "medium distance",
    "far": "far",
}


def _florence(scene: Any) -> dict:
    scene = mapping(scene)
    return mapping(scene["florence"]) if "florence" in scene else scene


def florence_section(scene: Any) -> Section:
    """Scene description, detected objects (high-risk ones flagged) and text; takes the scene section or Florence's dict."""
    florence = _florence(scene)
    lines = []
    caption = prose(florence.get("caption"))
    if caption:
        lines.append(FactLine(f"\n**Scene Description:**\n{caption}"))
    for key, title in LABEL_GROUPS:
        found = [text for text in map(prose, entries(mapping(florence.get(key)).get("labels"))) if text]
        if not found:
            continue
        shown = distinct(found)
        lines.append(FactLine(f"\n**{title}:** {', '.join(shown)}", len(shown)))
        if key == "security_objects":
            risky = [o for o in shown if any(word in o.lower() for word in HIGH_RISK_OBJECT_WORDS)]
            if risky:
                lines.append(FactLine(f"- **HIGH RISK OBJECTS**: {', '.join(risky)}", 0))
    return Section("### Scene Analysis (Florence-2)", tuple(lines))


def format_florence_scene_context(scene: dict | None) -> str:
    """The Florence-2 scene section, or "" when it holds nothing."""
    return florence_section(scene).text


def depth_section(depth: Any) -> Section:
    """How far the detection is from the camera, in words and as the relative depth."""
    depth = mapping(depth)
    proximity = PROXIMITY_WORDS.get(depth.get("proximity")) if isinstance(depth.get("proximity"), str) else None
    proximity = proximity or label(depth.get("proximity"))
    relative = number(depth.get("relative_depth"))
    relative = relative if relative is not None and 0.0 <= relative <= 1.0 else None
    scale = f"relative depth {relative:.2f}, where 0 is nearest and 1 farthest" if relative is not None else None
    if proximity and scale:
        line = f"- **Distance from camera**: {proximity} ({scale})"
    elif proximity or scale:
        line = f"- **Distance from camera**: {proximity or scale}"
    else:
        return Section("")
    return Section("### Proximity (Depth Estimation)", (FactLine(line),))


def format_depth_context(depth: dict | None) -> str:
    """The proximity section, or "" without a depth result."""
    return depth_section(depth).text
