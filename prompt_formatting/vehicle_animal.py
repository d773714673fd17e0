"""Vehicle and animal sections: the classifier's label with its runner-up alternatives."""

from __future__ import annotations

from typing import Any

from prompt_formatting.facts import FactLine, Section
from prompt_formatting.values import label, mapping, percent, scored


def _classification(result: Any, heading: str, noun: str) -> Section:
    result = mapping(result)
    top = label(result.get("label"))
    if top is None:
        return Section("")
    confidence = percent(result.get("confidence"))
    lines = [FactLine(f"- **{noun}**: {top}" + (f" (confidence: {confidence})" if confidence else ""))]
    alternatives = scored(result.get("top_k"), "label", skip=top)
    if alternatives:
        lines.append(FactLine(f"- **Alternatives**: {', '.join(alternatives)}", 0))
    return Section(heading, tuple(lines))


def vehicle_section(vehicle: Any) -> Section:
    return _classification(vehicle, "### Vehicle Classification", "Vehicle type")


def pet_section(pet: Any) -> Section:
    return _classification(pet, "### Animal Classification", "Animal")


def format_vehicle_context(vehicle: dict | None) -> str:
    """The vehicle type section, or "" without a vehicle result."""
    return vehicle_section(vehicle).text


def format_pet_context(pet: dict | None) -> str:
    """The animal type section, or "" without a pet result."""
    return pet_section(pet).text
