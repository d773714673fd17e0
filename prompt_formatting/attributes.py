"""Context richness: how many distinct facts the prompt states about a detection (seed target: 12+)."""

from __future__ import annotations

from prompt_formatting.declared import Area
from prompt_formatting.sections import build_sections


def count_context_attributes(enrichment: dict) -> int:
    """Count the facts the enrichment sections print, from the very lines the prompt prints.

    What counts as one attribute:
    - clothing: each printed category line (suspicious alert, service/utility worker, carrying, attire);
    - threat: the lead weapon's type and its severity, each further distinct weapon type, or "no weapons
      detected";
    - pose: each person's posture, its suspicious flag when raised, and the number of people when more than one;
    - demographics: age group and gender (or the combined label when they are not split);
    - action: the primary action; reid: the match (or "first sighting"), previous sightings, cameras, first seen;
    - vehicle / pet: the type when it is named (an "uncertain" type counts zero);
    - depth: the distance from the camera, and the approximate metres when given;
    - scene: the description, each distinct object, text and region label printed; CLIP's anomaly verdict
      and each scene tag printed.
    Confidences, boxes, similarities, runner-up alternatives and guidance notes qualify a fact and count
    zero. The detection header (camera, time, type, box) is not counted: it is there with or without the zoo.
    """
    sections = build_sections(Area.CONTEXT, enrichment) + build_sections(Area.ONDEMAND, enrichment)
    return sum(section.fact_count for section in sections)
