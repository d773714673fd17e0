"""Which sections the prompt holds, in what order, and which enrichment key feeds each."""

from __future__ import annotations

from typing import Any, Callable

from prompt_formatting.facts import Section, join_sections
from prompt_formatting.person import (
    activity_section,
    clothing_section,
    demographics_section,
    posture_section,
    recognition_section,
    threat_section,
)
from prompt_formatting.scene import depth_section, florence_section
from prompt_formatting.values import mapping
from prompt_formatting.vehicle_animal import pet_section, vehicle_section

SectionBuilder = Callable[[Any], Section]

# What the subject looks like and where it is: printed under "Visual Context".
CONTEXT_SECTIONS: tuple[tuple[str, SectionBuilder], ...] = (
    ("clothing", clothing_section),
    ("vehicle", vehicle_section),
    ("pet", pet_section),
    ("depth", depth_section),
    ("scene", florence_section),
)

# The on-demand models' findings, threat always first (seed order).
ONDEMAND_SECTIONS: tuple[tuple[str, SectionBuilder], ...] = (
    ("threat", threat_section),
    ("pose", posture_section),
    ("demographics", demographics_section),
    ("action", activity_section),
    ("reid", recognition_section),
)


def build_sections(table: tuple[tuple[str, SectionBuilder], ...], enrichment: Any) -> list[Section]:
    """Each table row's section built from its key of the enrichment dict (missing keys give empty sections)."""
    enrichment = mapping(enrichment)
    return [build(enrichment.get(key)) for key, build in table]


def format_ondemand_enrichment_context(enrichment: dict) -> str:
    """Threat, posture, demographics, activity and recognition sections, or "" when none has content."""
    return join_sections(build_sections(ONDEMAND_SECTIONS, enrichment))
