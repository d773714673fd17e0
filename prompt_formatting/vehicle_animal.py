"""Vehicle and animal sections: the classifier's type, normalised, never a non-vehicle class, uncertain when unsure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from prompt_formatting.declared import Area, ResultShape, model_section, result_section
from prompt_formatting.facts import FactLine, Section
from prompt_formatting.untrusted import capped_list, quote
from prompt_formatting.values import entries, mapping, number, percent
from prompt_formatting.vocabulary import (
    ANIMAL_TYPES,
    CLASSIFIER_CONFIDENCE_FLOOR,
    NOT_ANIMAL_LABELS,
    NOT_VEHICLE_LABELS,
    PLACEHOLDER_LABEL,
    VEHICLE_TYPES,
    readable_label,
)


@dataclass(frozen=True)
class ClassifierSection:
    """How one classifier's answer is read and printed."""

    heading: str
    noun: str  # the line's title ("Vehicle type")
    kind: str  # what it names, for the uncertain line ("vehicle")
    label_keys: tuple[str, ...]  # where the best label may be: ours first, then other classifiers' shapes
    known: frozenset[str]  # normalised labels printed bare; others are printed quoted
    excluded: frozenset[str]  # classes that are not this kind of object: never named


VEHICLE = ClassifierSection("### Vehicle Classification", "Vehicle type", "vehicle", ("label", "vehicle_type"),
                            VEHICLE_TYPES, NOT_VEHICLE_LABELS)
PET = ClassifierSection("### Animal Classification", "Animal", "animal", ("label", "pet_type", "animal_type"),
                        ANIMAL_TYPES, NOT_ANIMAL_LABELS)


def _ranked(result: dict, spec: ClassifierSection) -> list[tuple[str, float | None]]:
    """(normalised label, score) for the best label and every scored alternative, best first, each label once."""
    top = next((readable_label(result.get(k)) for k in spec.label_keys if readable_label(result.get(k))), None)
    scores: dict[str, float | None] = {}
    pairs = [(mapping(e).get("label"), mapping(e).get("score")) for e in entries(result.get("top_k"))]
    pairs += list(mapping(result.get("all_scores")).items())
    for raw, score in pairs:
        name = readable_label(raw)
        if name is not None and name not in scores:
            scores[name] = number(score)
    ranked = sorted(scores.items(), key=lambda item: -(item[1] if item[1] is not None else -1.0))
    if top is None:
        return ranked
    confidence = number(result.get("confidence"))
    top_score = confidence if confidence is not None else scores.get(top)
    rest = [(name, score) for name, score in ranked if name != top]
    if top_score is None:
        return [(top, None), *rest]
    return sorted([(top, top_score), *rest], key=lambda item: -(item[1] if item[1] is not None else -1.0))


def _classification(result: Any, spec: ClassifierSection) -> Section:
    ranked = _ranked(mapping(result), spec)
    if not ranked:
        return Section("")
    named = [(name, score) for name, score in ranked
             if name not in spec.excluded and not PLACEHOLDER_LABEL.fullmatch(name)]
    if not named:
        return Section(spec.heading, (FactLine(f"- **{spec.noun}**: uncertain (no {spec.kind} type recognised)", 0),))
    (best, confidence), alternatives = named[0], named[1:]
    if confidence is not None and confidence < CLASSIFIER_CONFIDENCE_FLOOR:
        return Section(spec.heading, (FactLine(
            f"- **{spec.noun}**: uncertain (classifier confidence {percent(confidence) or 'low'}, below the "
            f"{CLASSIFIER_CONFIDENCE_FLOOR:.0%} needed to name a type)", 0),))

    def shown(name: str) -> str:
        return name if name in spec.known else quote(name)

    lines = [FactLine(f"- **{spec.noun}**: {shown(best)}"
                      + (f" (confidence: {percent(confidence)})" if percent(confidence) else ""))]
    described = [f"{shown(n)} ({percent(s)})" if percent(s) else shown(n) for n, s in alternatives]
    if described:
        lines.append(FactLine(f"- **Alternatives**: {', '.join(capped_list(described))}", 0))
    return Section(spec.heading, tuple(lines))


class ClassScore(ResultShape):
    label: str
    score: float


class Classification(ResultShape):
    """A crop classifier's own best class, its confidence and the best few."""

    label: str
    confidence: float
    top_k: list[ClassScore]


@result_section("vehicle", model="vehicle")
class VehicleResult(Classification):
    vehicle_type: str | None = Field(None, description="the type as the prompt names it; null when unsure")


@result_section("pet", model="pet")
class PetResult(Classification):
    pet_type: str | None = Field(None, description="the type as the prompt names it; null when unsure")


@model_section("vehicle", purpose="vehicle type", area=Area.CONTEXT, order=20)
def vehicle_section(vehicle: Any) -> Section:
    return _classification(vehicle, VEHICLE)


@model_section("pet", purpose="animal type", area=Area.CONTEXT, order=30)
def pet_section(pet: Any) -> Section:
    return _classification(pet, PET)


def format_vehicle_context(vehicle: dict | None) -> str:
    """The vehicle type section, or "" without a vehicle result."""
    return vehicle_section(vehicle).text


def format_pet_context(pet: dict | None) -> str:
    """The animal type section, or "" without a pet result."""
    return pet_section(pet).text
