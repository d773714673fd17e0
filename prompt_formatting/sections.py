"""Which sections the prompt holds, in what order, and where in the enrichment each finds its model's result."""

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
from prompt_formatting.scene import clip_section, depth_section, florence_section
from prompt_formatting.values import mapping
from prompt_formatting.vehicle_animal import pet_section, vehicle_section

SectionBuilder = Callable[[Any], Section]
# Where a section's input sits in the enrichment: key paths tried in order, the first present one wins.
Paths = tuple[tuple[str, ...], ...]


def find(enrichment: Any, paths: Paths) -> Any:
    """The value at the first key path present in the enrichment (None when none is)."""
    for path in paths:
        value: Any = enrichment
        for key in path:
            value = mapping(value).get(key)
        if value is not None:
            return value
    return None


# What the subject looks like and where it is: printed under "Visual Context".
CONTEXT_SECTIONS: tuple[tuple[Paths, SectionBuilder], ...] = (
    ((("clothing",),), clothing_section),
    ((("vehicle",),), vehicle_section),
    ((("pet",),), pet_section),
    ((("depth",),), depth_section),
    # Ours nests Florence-2 under scene.florence; the scene key may also hold Florence's dict itself.
    ((("scene", "florence"), ("scene",), ("florence",)), florence_section),
    ((("scene", "clip"), ("clip",)), clip_section),
)

# The on-demand models' findings, threat always first (seed order).
ONDEMAND_SECTIONS: tuple[tuple[Paths, SectionBuilder], ...] = (
    ((("threat",),), threat_section),
    ((("pose",),), posture_section),
    ((("demographics",),), demographics_section),
    ((("action",),), activity_section),
    # Ours: the gallery's match under reid; the seed's: reid_match at the top of the enrichment.
    ((("reid", "reid_match"), ("reid_match",)), recognition_section),
)


def build_sections(table: tuple[tuple[Paths, SectionBuilder], ...], enrichment: Any) -> list[Section]:
    """Each table row's section built from its place in the enrichment dict (missing ones give empty sections)."""
    return [build(find(enrichment, paths)) for paths, build in table]


def format_ondemand_enrichment_context(enrichment: dict) -> str:
    """Threat, posture, demographics, activity and recognition sections, or "" when none has content."""
    return join_sections(build_sections(ONDEMAND_SECTIONS, enrichment))
