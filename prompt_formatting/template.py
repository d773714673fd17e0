"""The MODEL_ZOO_ENHANCED risk-analysis prompt: templates as data, and the function that fills them."""

from __future__ import annotations

import re
from string import Template
from typing import Any, Callable

from prompt_formatting.facts import join_sections
from prompt_formatting.sections import CONTEXT_SECTIONS, ONDEMAND_SECTIONS, build_sections
from prompt_formatting.values import box, label, mapping, moment, out_of_100, percent, prose, yes_no

RISK_ANALYSIS_TEMPLATE = Template("""\
You are a home security analyst. A camera detected something, and a set of vision models has
described it. Assess the risk this event poses to the household, using only the evidence below.

## Detection
$detection

$context_section

$ondemand_section

$unavailable_section

## Your answer
Respond with one JSON object and nothing else:
{"risk_score": <integer 0-100>, "risk_level": "<low|medium|high|critical>", "summary": "<one sentence>", "reasoning": "<the evidence behind the score>"}
Use risk_level "low" for scores 0-29, "medium" for 30-59, "high" for 60-84 and "critical" for 85-100.
""")

CONTEXT_SECTION = Template("""\
## Visual Context

$context
""")

# Seed wording (ONDEMAND_ENRICHMENT_SECTION) with its guidance lines.
ONDEMAND_ENRICHMENT_SECTION = Template("""\
## On-Demand Analysis Results

$ondemand_context

Use this additional context to refine your risk assessment:
- Threat detection results are HIGH PRIORITY - any weapon detection should significantly increase risk
- Body posture can indicate intent (crouching near door = suspicious, standing normally = neutral)
- Demographics help contextualize behavior (child vs adult, known vs unknown)
- Action recognition provides behavioral context beyond static appearance
- Person recognition helps identify returning visitors vs new individuals
""")

UNAVAILABLE_SECTION = Template("""\
## Unavailable Analyses

These models produced no result for this event. What they would have told you is UNKNOWN:
do not read their silence as evidence that the event is safe.
$unavailable
""")

# Detection header lines: title, event key, reader, and the detection type it is limited to (None: any).
# Lines whose value is missing are left out.
DETECTION_FIELDS: tuple[tuple[str, str, Callable[[Any], str | None], str | None], ...] = (
    ("Camera", "camera_id", prose, None),
    ("Time", "timestamp", moment, None),
    ("Detection type", "detection_type", label, None),
    ("Detector confidence", "confidence", percent, None),
    ("Bounding box (pixels, x1 y1 x2 y2)", "bbox", box, None),
    ("Face visible", "face_visible", yes_no, "person"),
    ("Upstream suspicion score", "suspicious_score", out_of_100, None),
)

# What each model would have contributed, so an unavailable one is named by what is now unknown.
MODEL_PURPOSES: dict[str, str] = {
    "threat": "weapon detection",
    "pose": "body posture",
    "clothing": "clothing and carried items",
    "age_gender": "age group and gender",
    "vehicle": "vehicle type",
    "pet": "animal type",
    "reid": "re-identification against previously seen people",
    "depth": "distance from the camera",
    "action": "activity recognition",
    "florence": "scene description, security objects and visible text",
    "clip": "scene embedding",
    "reid_gallery": "matching against previously seen people",
}


def _detection_lines(event: Any) -> str:
    event = mapping(event)
    lines = []
    detection_type = label(event.get("detection_type"))
    for title, key, read, only_for in DETECTION_FIELDS:
        if only_for is not None and detection_type != only_for:
            continue
        value = read(event.get(key))
        if value:
            lines.append(f"- {title}: {value}")
    return "\n".join(lines) or "- No detection details were supplied"


def _unavailable_lines(unavailable: Any) -> str:
    lines = []
    for model, reason in sorted(mapping(unavailable).items(), key=lambda item: str(item[0])):
        name = prose(model) if isinstance(model, str) else None
        if name is None:
            continue
        purpose = MODEL_PURPOSES.get(name)
        why = prose(reason) or "no result"
        lines.append(f"- {name} ({purpose}): {why}" if purpose else f"- {name}: {why}")
    return "\n".join(lines)


def _fill(section: Template, key: str, body: str) -> str:
    return section.substitute({key: body}) if body else ""


def build_risk_prompt(event: dict, enrichment: dict, unavailable: dict[str, str]) -> str:
    """The full Nemotron prompt; empty sections are left out and unavailable models are named."""
    text = RISK_ANALYSIS_TEMPLATE.substitute(
        detection=_detection_lines(event),
        context_section=_fill(CONTEXT_SECTION, "context", join_sections(build_sections(CONTEXT_SECTIONS, enrichment))),
        ondemand_section=_fill(
            ONDEMAND_ENRICHMENT_SECTION, "ondemand_context", join_sections(build_sections(ONDEMAND_SECTIONS, enrichment))
        ),
        unavailable_section=_fill(UNAVAILABLE_SECTION, "unavailable", _unavailable_lines(unavailable)),
    )
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
