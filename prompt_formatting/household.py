"""Who is at the door: faces found, household members and registered vehicles recognised, and how that calibrates.

Names, descriptions and plates are the household's (an operator typed them) or OCR's: untrusted text, printed
quoted as data. Face and body vectors never reach the prompt (the face finisher drops the face vector; the
household section has none).
"""

from __future__ import annotations

from typing import Any

from prompt_formatting.declared import Area, ResultShape, assembly_section, model_purpose, result_section
from prompt_formatting.facts import FactLine, Section
from prompt_formatting.untrusted import quoted
from prompt_formatting.values import mapping, percent

ROLES = {"resident": "resident", "family": "family", "service_worker": "service worker",
         "frequent_visitor": "frequent visitor"}

model_purpose("face", "face detection and household face recognition")


@result_section("face", model="face")
class FaceResult(ResultShape):
    """MTCNN's faces in the person's head region, best quality first, and the embedder's id (the vector itself is
    dropped at assembly)."""

    face_visible: bool
    face_count: int
    faces: list[dict[str, Any]]
    best: dict[str, Any] | None = None
    embedding_model: str | None = None
    dim: int | None = None
    region: list[float] | None = None
    source: str | None = None


@result_section("household", model=None)
class HouseholdResult(ResultShape):
    """Assembled: where face_visible comes from, the household face match (match / no_match / no_gallery /
    re_enroll), the re-ID identity's name, and a vehicle's plate with whether it is registered."""

    face_visible: bool | None = None
    face_visible_source: str | None = None
    face_match: dict[str, Any] | None = None
    identity: dict[str, Any] | None = None
    plate: dict[str, Any] | None = None
    vehicle_look: dict[str, Any] | None = None  # the crop's CLIP look against registered vehicles' (no plate matched)


def member_words(member: Any) -> str | None:
    """'"Dana" (resident)', or None when the member has no printable name."""
    member = mapping(member)
    name = quoted(member.get("name"), "name")
    if name is None:
        return None
    role = ROLES.get(member.get("role"))
    return f"{name} ({role})" if role else name


def schedule_words(within: Any) -> str:
    if within is True:
        return ", within their schedule"
    if within is False:
        return ", outside their schedule"
    return ", no schedule set"


def face_line(match: Any) -> FactLine | None:
    match = mapping(match)
    outcome = match.get("outcome")
    if outcome == "match" and (who := member_words(match.get("member"))):
        similarity = percent(match.get("similarity"))
        return FactLine(f"- **Known person**: {who}{schedule_words(match.get('within_schedule'))}"
                        + (f" (face similarity {similarity})" if similarity else ""))
    if outcome == "no_match":
        return FactLine("- **Face**: unknown face, first seen (no enrolled household member matches)")
    if outcome == "no_gallery":
        return FactLine("- **Face**: not compared (no household faces are enrolled)")
    if outcome == "re_enroll":
        return FactLine("- **Face**: not compared (household faces were enrolled with another face model; "
                        "they must be enrolled again)")
    return None


def plate_line(plate: Any) -> FactLine | None:
    plate = mapping(plate)
    text = quoted(plate.get("text"), "name")
    if text is None:
        return None
    confidence = percent(plate.get("confidence"))
    read = f"{text} read at {confidence}" if confidence else f"{text} read"
    vehicle = mapping(plate.get("vehicle"))
    if plate.get("registered") is True and (description := quoted(vehicle.get("description"), "name")):
        return FactLine(f"- **Plate**: {read}: registered household vehicle {description}")
    if plate.get("registered") is False:
        return FactLine(f"- **Plate**: {read}, not registered")
    return FactLine(f"- **Plate**: {read} (not checked against registered vehicles)")


def look_line(look: Any) -> FactLine | None:
    """The vehicle recognised by its look when no plate named it: a registered vehicle, or none that looks alike."""
    look = mapping(look)
    outcome = look.get("outcome")
    description = quoted(mapping(look.get("vehicle")).get("description"), "name")
    if outcome == "match" and description:
        similarity = percent(look.get("similarity"))
        return FactLine(f"- **Vehicle**: looks like registered household vehicle {description}"
                        + (f" (similarity {similarity}; by its look, not its plate)" if similarity else " (by its look)"))
    if outcome == "no_match":
        return FactLine("- **Vehicle**: looks like none of the registered household vehicles")
    return None


@assembly_section("household", purpose="household members and registered vehicles", area=Area.CONTEXT, order=6)
def household_section(household: Any) -> Section:
    """Face seen (and by what), the household match, a named re-ID identity, a vehicle's plate."""
    household = mapping(household)
    lines: list[FactLine] = []
    visible = household.get("face_visible")
    if isinstance(visible, bool):
        if household.get("face_visible_source") == "face detection":
            source = "face detection found one" if visible else "face detection found none in the head region"
        else:
            source = "the camera's own flag, a hint: no face detection ran"
        lines.append(FactLine(f"- **Face visible**: {'yes' if visible else 'no'} ({source})"))
    if (line := face_line(household.get("face_match"))) is not None:
        lines.append(line)
    identity = mapping(household.get("identity"))
    if (who := member_words(identity.get("member"))) and (named := quoted(identity.get("identity"), "name")):
        lines.append(FactLine(f"- **Re-identified as**: {who}, named from identity {named}"))
    if (line := plate_line(household.get("plate"))) is not None:
        lines.append(line)
    if (line := look_line(household.get("vehicle_look"))) is not None:
        lines.append(line)
    return Section("### Household", tuple(lines))


def calibration_household(household: Any, light: Any) -> list[str]:
    """Calibration lines the household evidence asks for (none when there is none)."""
    household = mapping(household)
    match = mapping(household.get("face_match"))
    lines = []
    if match.get("outcome") == "match":
        if match.get("within_schedule") is False:
            lines.append("A known household member outside their schedule is worth noting, not alarming on its own.")
        else:
            lines.append("A known household member (within their schedule, or with none set) lowers concern.")
    elif match.get("outcome") == "no_match" and light == "night":
        lines.append("An unknown face at night asks for attention.")
    if household.get("face_visible") is False and household.get("face_visible_source") == "face detection":
        lines.append("This person's face was not visible to face detection: note it (a covered face at night "
                     "raises concern).")
    plate = mapping(household.get("plate"))
    if plate.get("registered") is True:
        lines.append("A registered household vehicle lowers concern.")
    elif mapping(household.get("vehicle_look")).get("outcome") == "match":
        lines.append("A vehicle that looks like a registered one (its plate unread or unregistered) lowers concern "
                     "a little; a look can be shared by other cars.")
    return lines
