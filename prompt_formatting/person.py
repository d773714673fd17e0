"""Person sections: appearance (FashionCLIP), threat, posture, demographics, activity and recognition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prompt_formatting.facts import FactLine, Section
from prompt_formatting.values import box, count, entries, label, mapping, moment, number, percent, prose, scored


@dataclass(frozen=True)
class ClothingRule:
    """When a clothing category earns a line: above `min_confidence` (None: whenever present)."""

    category: str
    prefix: str
    min_confidence: float | None
    confidence_format: str | None  # how the confidence follows the match; None leaves it out


# Seed rules: suspicious attire is an alert above 60 %, uniforms count above 50 %, carried items and
# general attire are always worth a line.
CLOTHING_RULES: tuple[ClothingRule, ...] = (
    ClothingRule("suspicious", "- **ALERT**: ", 0.6, " (confidence: {})"),
    ClothingRule("delivery", "- Service worker identified: ", 0.5, " ({})"),
    ClothingRule("utility", "- Utility worker identified: ", 0.5, " ({})"),
    ClothingRule("carrying", "- Carrying: ", None, " ({})"),
    ClothingRule("casual", "- General attire: ", None, None),
)


def clothing_section(clothing: Any) -> Section:
    """FashionCLIP's per-category top matches, filtered by the clothing rules."""
    clothing = mapping(clothing)
    lines = []
    for rule in CLOTHING_RULES:
        result = mapping(clothing.get(rule.category))
        match = label(result.get("top_match"))
        confidence = number(result.get("confidence"))
        if match is None:
            continue
        if rule.min_confidence is not None and (confidence is None or confidence <= rule.min_confidence):
            continue
        shown = percent(confidence)
        suffix = rule.confidence_format.format(shown) if rule.confidence_format and shown else ""
        lines.append(FactLine(f"{rule.prefix}{match}{suffix}"))
    return Section("### Person Appearance Analysis", tuple(lines))


def format_enhanced_clothing_context(clothing: dict | None) -> str:
    """The appearance section, or "" when no clothing line applies."""
    return clothing_section(clothing).text


def _threat_entry(value: Any) -> tuple[str, float | None, str | None] | None:
    entry = mapping(value)
    kind = label(entry.get("type"))
    return None if kind is None else (kind, number(entry.get("confidence")), box(entry.get("bbox")))


def threat_section(threat: Any) -> Section:
    """A weapon alert (highest threat first), or a plain 'none found' when the detector ran clean."""
    threat = mapping(threat)
    if not threat:
        return Section("")
    found = [e for e in map(_threat_entry, entries(threat.get("detections"))) if e is not None]
    highest = _threat_entry(threat.get("highest_threat"))
    if highest is None and found:
        highest = max(found, key=lambda e: e[1] if e[1] is not None else -1.0)
    if highest is None:
        if threat.get("threats_detected") is True:
            return Section("### ⚠️ THREAT DETECTED", (FactLine("- **Type**: weapon (type not reported)"),))
        ran = isinstance(threat.get("threats_detected"), bool) or isinstance(threat.get("detections"), list)
        return Section("### Threat Detection", (FactLine("- No weapons detected"),) if ran else ())
    kind, confidence, where = highest
    lines = [FactLine(f"- **Type**: {kind.upper()}")]
    if percent(confidence):
        lines.append(FactLine(f"- **Confidence**: {percent(confidence)}", 0))
    if where:
        lines.append(FactLine(f"- **Location**: {where}", 0))
    others = [e for e in found if e != highest]
    if others:
        described = [f"{k} ({percent(c)})" if percent(c) else k for k, c, _ in others]
        new_kinds = {k for k, _, _ in others} - {kind}
        lines.append(FactLine(f"- **Other detections**: {', '.join(described)}", len(new_kinds)))
    return Section("### ⚠️ THREAT DETECTED", tuple(lines))


def posture_section(pose: Any) -> Section:
    """Posture of each person the pose model saw (one for the contract's single-person result)."""
    pose = mapping(pose)
    people = [mapping(p) for p in entries(pose.get("poses"))] or [pose]
    lines = []
    for i, person in enumerate(people, start=1):
        posture = label(person.get("posture"))
        if posture is None:
            continue
        confidence = percent(person.get("posture_confidence", person.get("confidence")))
        suffix = f" (confidence: {confidence})" if confidence else ""
        lines.append(FactLine(f"- Person {i}: {posture}{suffix}"))
    persons = count(pose.get("persons_detected"))
    if persons is not None and persons > 1:
        lines.append(FactLine(f"- People in the detection box: {persons}"))
    return Section("### Body Posture Analysis", tuple(lines))


def demographics_section(demographics: Any) -> Section:
    """Estimated age group and gender from the face (or the top of the person box)."""
    demo = mapping(demographics)
    age, gender = label(demo.get("age")), label(demo.get("gender"))
    lines = []
    if age:
        lines.append(FactLine(f"- **Estimated age group**: {age}"))
    if gender:
        lines.append(FactLine(f"- **Gender**: {gender}"))
    if not lines and label(demo.get("label")):
        lines.append(FactLine(f"- **Estimate**: {label(demo.get('label'))}"))
    if lines and percent(demo.get("confidence")):
        lines.append(FactLine(f"- **Confidence**: {percent(demo.get('confidence'))}", 0))
    if lines and demo.get("face_source") == "person_top_quarter":
        lines.append(FactLine("- Face region estimated from the top of the person box (less reliable)", 0))
    return Section("### Person Demographics", tuple(lines))


def activity_section(action: Any) -> Section:
    """X-CLIP's primary action with the runner-up interpretations."""
    action = mapping(action)
    top = label(action.get("top_action"))
    if top is None:
        return Section("")
    lines = [FactLine(f"- **Primary action**: {top}")]
    if percent(action.get("confidence")):
        lines.append(FactLine(f"- **Confidence**: {percent(action.get('confidence'))}", 0))
    alternatives = scored(action.get("top_actions"), "action", skip=top)
    if alternatives:
        lines.append(FactLine(f"- **Alternative interpretations**: {', '.join(alternatives)}", 0))
    return Section("### Detected Activity", tuple(lines))


def recognition_section(reid: Any) -> Section:
    """The re-identification gallery's answer: a returning person with history, or a first sighting."""
    match = mapping(mapping(reid).get("reid_match"))
    identity = prose(match.get("identity"))
    if identity is None:
        return Section("")
    name = prose(match.get("name"))
    who = f"{name} (identity {identity})" if name else identity
    if match.get("new") is True:
        return Section("### Person Recognition", (FactLine(f"- **Match**: none, first sighting (registered as {who})"),))
    lines = [FactLine(f"- **Match**: {who}")]
    if percent(match.get("similarity")):
        lines.append(FactLine(f"- **Similarity**: {percent(match.get('similarity'))}", 0))
    sightings = count(match.get("sighting_count"))
    if sightings:
        lines.append(FactLine(f"- **Sightings**: {sightings} (including this one)"))
    cameras = [c for c in map(prose, entries(match.get("cameras"))) if c]
    if cameras:
        lines.append(FactLine(f"- **Seen on cameras**: {', '.join(cameras)}"))
    if moment(match.get("first_seen")):
        lines.append(FactLine(f"- **First seen**: {moment(match.get('first_seen'))}"))
    return Section("### Person Recognition", tuple(lines))
