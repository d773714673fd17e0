"""The detector-confidence screen: a detection below the pool's minimum gets this short note instead of the zoo."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from prompt_formatting.declared import Area, ResultShape, assembly_section, result_section
from prompt_formatting.facts import FactLine, Section
from prompt_formatting.values import mapping, percent


@result_section("screening", model=None)
class ScreeningResult(ResultShape):
    """Written by the router (no model of its own) when the detector's confidence is below MIN_DETECTION_CONFIDENCE:
    no vision model ran for the event."""

    below_threshold: bool
    confidence: float = Field(description="the detector's confidence the event carried")
    min_confidence: float = Field(description="MIN_DETECTION_CONFIDENCE when the event was routed")


@assembly_section("screening", purpose="whether the detection was confident enough to analyse", area=Area.CONTEXT,
                  order=0)
def screening_section(screening: Any) -> Section:
    """One line: the detection was below the minimum confidence, so no model looked at it."""
    screening = mapping(screening)
    seen, floor = percent(screening.get("confidence")), percent(screening.get("min_confidence"))
    if screening.get("below_threshold") is not True or not seen or not floor:
        return Section("### Screening", ())
    return Section("### Screening", (FactLine(
        f"- **Below threshold**: detector confidence {seen} is under the minimum of {floor}; no vision model "
        "analysed this detection. Weigh it as weak evidence.", 0),))
