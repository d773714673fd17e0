"""Person sections: appearance (FashionCLIP), threat, posture, demographics, activity and recognition.

Each reader takes the seed document's shape and ours (see README, "The prompt"): threat `threats` or
`detections`, pose `poses[]` or one person, demographics `age_group` or `age`, action `all_scores` or
`top_actions`, and the re-identification match however it is nested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from prompt_formatting.declared import Area, ResultShape, model_section, result_section
from prompt_formatting.facts import FactLine, Section
from prompt_formatting.untrusted import capped_list, clean_text, quote, quoted
from prompt_formatting.values import box, count, entries, mapping, moment, number, percent
from prompt_formatting.vocabulary import (
    GENDER_WORDS,
    POSTURE_WORDS,
    SEVERITY_RANK,
    SUSPICIOUS_POSTURES,
    THREAT_SEVERITY,
    describe_age,
    posture_key,
    readable_label,
    severity_of,
)


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


class ClothingMatch(ResultShape):
    """FashionCLIP's best prompt of one clothing category, and every prompt's score."""

    top_match: str
    confidence: float
    all_scores: dict[str, float]


@result_section("clothing", model="clothing")
class ClothingResult(ResultShape):
    """One entry per category of the clothing prompt table (carrying, suspicious, delivery, utility, casual ...)."""

    model_config = ResultShape.model_config | {"extra": "allow"}
    __pydantic_extra__: dict[str, ClothingMatch] = Field(init=False)


@model_section("clothing", purpose="clothing and carried items", area=Area.CONTEXT, order=10)
def clothing_section(clothing: Any) -> Section:
    """FashionCLIP's per-category top matches, filtered by the clothing rules."""
    clothing = mapping(clothing)
    lines = []
    for rule in CLOTHING_RULES:
        result = mapping(clothing.get(rule.category))
        match = quoted(result.get("top_match"))
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


# --- threat ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Threat:
    """One weapon detection as the prompt prints it."""

    kind: str  # normalised type ("knife"), for comparing detections
    name: str  # printed type: a tabled weapon word bare, anything else quoted
    severity: str
    confidence: float | None
    where: str | None

    @property
    def order(self) -> tuple[int, float]:
        """Most severe first, then most confident."""
        return SEVERITY_RANK[self.severity], -(self.confidence if self.confidence is not None else -1.0)


def _threat(value: Any) -> Threat | None:
    entry = mapping(value)
    kind = readable_label(entry.get("type"))
    if kind is None:
        return None
    name = kind if kind in THREAT_SEVERITY else quote(clean_text(entry.get("type")) or kind)
    return Threat(kind, name, severity_of(entry.get("severity"), kind), number(entry.get("confidence")),
                  box(entry.get("bbox")))


def threats_of(threat: dict) -> list[Threat]:
    """Every distinct detection (seed `threats`, our `detections`, and `highest_threat`), most severe first."""
    found: list[Threat] = []
    for value in [*entries(threat.get("threats")), *entries(threat.get("detections")), threat.get("highest_threat")]:
        entry = _threat(value)
        if entry is not None and entry not in found:
            found.append(entry)
    return sorted(found, key=lambda t: t.order)


class ThreatFound(ResultShape):
    type: str
    confidence: float
    bbox: list[float] = Field(description="[x1, y1, x2, y2] in frame pixels")
    severity: str | None = Field(None, description="ours: critical, high or medium (THREAT_SEVERITY)")


@result_section("threat", model="threat")
class ThreatResult(ResultShape):
    """Seed: threats_detected, threats, highest_threat (threats[0]: the most severe, then the most confident)."""

    threats_detected: bool
    threats: list[ThreatFound]
    highest_threat: ThreatFound | None


@model_section("threat", purpose="weapon detection", area=Area.ONDEMAND, order=10)
def threat_section(threat: Any) -> Section:
    """Weapon alert led by the most severe detection, or a plain 'none found' when the detector ran clean."""
    threat = mapping(threat)
    if not threat:
        return Section("")
    found = threats_of(threat)
    if not found:
        if threat.get("threats_detected") is True:
            return Section("### ⚠️ THREAT DETECTED", (
                FactLine("- **Type**: weapon (type not reported)"),
                FactLine(f"- **Severity**: {severity_of(None, 'weapon')}"),
            ))
        ran = isinstance(threat.get("threats_detected"), bool) or any(
            isinstance(threat.get(key), list) for key in ("threats", "detections"))
        return Section("### Threat Detection", (FactLine("- No weapons detected"),) if ran else ())
    lead, others = found[0], found[1:]
    lines = [FactLine(f"- **Type**: {lead.name.upper()}"), FactLine(f"- **Severity**: {lead.severity}")]
    if percent(lead.confidence):
        lines.append(FactLine(f"- **Confidence**: {percent(lead.confidence)}", 0))
    if lead.where:
        lines.append(FactLine(f"- **Location**: {lead.where}", 0))
    if others:
        described = [f"{t.name} ({t.severity} severity, {percent(t.confidence)})" if percent(t.confidence)
                     else f"{t.name} ({t.severity} severity)" for t in others]
        new_kinds = {t.kind for t in others} - {lead.kind}
        lines.append(FactLine(f"- **Other detections**: {', '.join(described)}", len(new_kinds)))
    return Section("### ⚠️ THREAT DETECTED", tuple(lines))


# --- posture -----------------------------------------------------------------------------------------

SUSPICIOUS_POSTURE_NOTE = ", a suspicious posture at a door or entrance"


def _first_number(entry: dict, *keys: str) -> float | None:
    return next((number(entry.get(k)) for k in keys if number(entry.get(k)) is not None), None)


class PersonPose(ResultShape):
    posture: str
    confidence: float
    keypoints: list[list[float]] = Field(description="17 COCO keypoints as [x, y, score] in frame pixels")
    suspicious: bool | None = Field(None, description="ours: crouching, crawling or lying down")
    bbox: list[float] | None = Field(None, description="ours: the person's box, [x1, y1, x2, y2]")


@result_section("pose", model="pose")
class PoseResult(ResultShape):
    """Seed: poses[] (the event's person first); ours: the first person's fields flattened beside them."""

    poses: list[PersonPose]
    posture: str | None = None
    posture_confidence: float | None = None
    keypoints: list[list[float]] | None = None
    persons_detected: int | None = None


@model_section("pose", purpose="body posture", area=Area.ONDEMAND, order=20)
def posture_section(pose: Any) -> Section:
    """Posture of each person the pose model saw (seed `poses[]`, or our single-person result), flagged
    when it is one that matters at a door (the entry's `suspicious`, else SUSPICIOUS_POSTURES)."""
    pose = mapping(pose)
    listed = [mapping(p) for p in entries(pose.get("poses"))]
    lines = []
    for i, person in enumerate(listed or [pose], start=1):
        key = posture_key(person.get("posture"))
        if key is None:
            if listed:  # the seed lists every person the pose model found, posture or not
                lines.append(FactLine(f"- Person {i}: posture not determined", 0))
            continue
        name = POSTURE_WORDS.get(key) or quoted(person.get("posture"))
        confidence = percent(_first_number(person, "posture_confidence", "confidence"))
        flagged = person.get("suspicious")
        suspicious = flagged if isinstance(flagged, bool) else key in SUSPICIOUS_POSTURES
        text = f"- Person {i}: {name}" + (f" (confidence: {confidence})" if confidence else "")
        lines.append(FactLine(text + SUSPICIOUS_POSTURE_NOTE, 2) if suspicious else FactLine(text))
    persons = count(pose.get("persons_detected"))
    if persons is not None and persons > 1:
        lines.append(FactLine(f"- People in the detection box: {persons}"))
    return Section("### Body Posture Analysis", tuple(lines))


# --- demographics ------------------------------------------------------------------------------------

DEMOGRAPHICS_NOTE = "- Demographics never raise or lower risk on their own"


class LabelScore(ResultShape):
    label: str
    score: float


@result_section("demographics", model="age_gender")
class DemographicsResult(ResultShape):
    """Seed: age_group, gender, confidence (age_group null when the model gives no age)."""

    age_group: str | None
    gender: str | None
    confidence: float
    age: str | None = None
    label: str | None = None
    top_k: list[LabelScore] | None = None
    face_source: str | None = Field(None, description="ours: face_bbox, or person_top_quarter without one")


@model_section("age_gender", purpose="age group and gender", area=Area.ONDEMAND, order=30, paths=(("demographics",),))
def demographics_section(demographics: Any) -> Section:
    """Estimated age (seed `age_group`, or our `age`) in words with its range, and gender."""
    demo = mapping(demographics)
    raw_age = demo.get("age_group") if demo.get("age_group") is not None else demo.get("age")
    age = describe_age(raw_age) or quoted(raw_age)
    gender_text = clean_text(demo.get("gender"))
    gender = GENDER_WORDS.get(gender_text.lower()) if gender_text else None
    gender = gender or quoted(demo.get("gender"))
    lines = []
    if age:
        lines.append(FactLine(f"- **Estimated age group**: {age}"))
    if gender:
        lines.append(FactLine(f"- **Gender**: {gender}"))
    if not lines and quoted(demo.get("label")):
        lines.append(FactLine(f"- **Estimate**: {quoted(demo.get('label'))}"))
    if not lines:
        return Section("")
    if percent(demo.get("confidence")):
        lines.append(FactLine(f"- **Confidence**: {percent(demo.get('confidence'))}", 0))
    if demo.get("face_source") == "person_top_quarter":
        lines.append(FactLine("- Face region estimated from the top of the person box (less reliable)", 0))
    lines.append(FactLine(DEMOGRAPHICS_NOTE, 0))
    return Section("### Person Demographics", tuple(lines))


# --- activity ----------------------------------------------------------------------------------------

# Runner-up actions printed after the primary one: the seed shows its top three scores (the primary and two
# more); our action model scores every action in all_scores, and the long tail would only be noise.
ACTION_ALTERNATIVES = 2


def _action_scores(action: dict) -> list[tuple[str, float | None]]:
    """(action, score) pairs from the seed's `all_scores` {action: score} or our `top_actions` list."""
    pairs = [(mapping(e).get("action"), number(mapping(e).get("score"))) for e in entries(action.get("top_actions"))]
    pairs += [(name, number(score)) for name, score in mapping(action.get("all_scores")).items()]
    cleaned = [(clean_text(name), score) for name, score in pairs]
    return [(name, score) for name, score in cleaned if name is not None]


class ActionScore(ResultShape):
    action: str
    score: float


@result_section("action", model="action")
class ActionResult(ResultShape):
    """Seed: top_action, confidence, all_scores {action: score} (every action of the table, summing to 1)."""

    top_action: str
    confidence: float
    all_scores: dict[str, float]
    top_actions: list[ActionScore] | None = None
    frames_used: int | None = None


@model_section("action", purpose="activity recognition", area=Area.ONDEMAND, order=40)
def activity_section(action: Any) -> Section:
    """X-CLIP's primary action with the ACTION_ALTERNATIVES best runner-up interpretations."""
    action = mapping(action)
    top = clean_text(action.get("top_action"))
    if top is None:
        return Section("")
    lines = [FactLine(f"- **Primary action**: {quote(top)}")]
    if percent(action.get("confidence")):
        lines.append(FactLine(f"- **Confidence**: {percent(action.get('confidence'))}", 0))
    seen = {top}
    alternatives = []
    for name, score in sorted(_action_scores(action), key=lambda p: -(p[1] if p[1] is not None else -1.0)):
        if name in seen:
            continue
        seen.add(name)
        alternatives.append(f"{quote(name)} ({percent(score)})" if percent(score) else quote(name))
    alternatives = alternatives[:ACTION_ALTERNATIVES]
    if alternatives:
        lines.append(FactLine(f"- **Alternative interpretations**: {', '.join(capped_list(alternatives))}", 0))
    return Section("### Detected Activity", tuple(lines))


# --- recognition -------------------------------------------------------------------------------------


# Ours: the gallery's match under reid; the seed's: reid_match at the top of the enrichment.
@result_section("reid_match", model="reid")
class SeedReidMatch(ResultShape):
    """Seed, top level: present only when the person matched an identity seen before; sighting_count counts the
    previous sightings."""

    identity: str
    similarity: float
    sighting_count: int
    name: str | None = None


class GalleryMatch(ResultShape):
    identity: str
    similarity: float
    sighting_count: int = Field(description="including this sighting")
    name: str | None = None
    cameras: list[str] | None = None
    first_seen: float | None = None
    last_seen: float | None = None
    new: bool | None = None


@result_section("reid", model="reid")
class ReidResult(ResultShape):
    """The OSNet embedding and, when the gallery was consulted, its full answer (also for a first sighting)."""

    embedding: list[float]
    dim: int
    reid_match: GalleryMatch | None = None


@model_section(
    "reid", purpose="re-identification against previously seen people", area=Area.ONDEMAND, order=50,
    paths=(("reid", "reid_match"), ("reid_match",)),
)
def recognition_section(match: Any) -> Section:
    """The re-identification match: a returning person with history, or a first sighting.

    Our gallery's match carries `new` and counts this sighting in `sighting_count`; a seed-shaped match
    (identity, similarity, sighting_count only) is printed as the seed prints it.
    """
    match = mapping(match)
    identity = quoted(match.get("identity"), "name")
    if identity is None:
        return Section("")
    name = quoted(match.get("name"), "name")
    who = f"{name} (identity {identity})" if name else identity
    if match.get("new") is True:
        first = FactLine(f"- **Match**: none, first sighting (registered as {who})")
        return Section("### Person Recognition", (first,))
    lines = [FactLine(f"- **Match**: {who}")]
    if percent(match.get("similarity")):
        lines.append(FactLine(f"- **Similarity**: {percent(match.get('similarity'))}", 0))
    sightings = count(match.get("sighting_count"))
    if sightings is not None and isinstance(match.get("new"), bool):
        previous = max(sightings - 1, 0)
        lines.append(FactLine(f"- **Previous sightings**: {previous} times ({sightings} including this one)"))
    elif sightings is not None:
        lines.append(FactLine(f"- **Previous sightings**: {sightings} times"))
    cameras = capped_list([c for c in (quoted(c, "name") for c in entries(match.get("cameras"))) if c])
    if cameras:
        lines.append(FactLine(f"- **Seen on cameras**: {', '.join(cameras)}"))
    if moment(match.get("first_seen")):
        lines.append(FactLine(f"- **First seen**: {moment(match.get('first_seen'))}"))
    return Section("### Person Recognition", tuple(lines))
