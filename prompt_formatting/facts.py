"""A prompt section as data: a heading and fact lines, rendered and counted from the same lines."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FactLine:
    """One printed line and how many distinct facts about the detection it states (0 for qualifiers)."""

    text: str
    facts: int = 1


@dataclass(frozen=True)
class Section:
    """A heading over fact lines; a section with no lines prints nothing."""

    heading: str
    lines: tuple[FactLine, ...] = ()

    @property
    def text(self) -> str:
        if not self.lines:
            return ""
        return "\n".join([self.heading, *(line.text for line in self.lines)])

    @property
    def fact_count(self) -> int:
        return sum(line.facts for line in self.lines)


def join_sections(sections: list[Section]) -> str:
    """Non-empty sections separated by blank lines."""
    return "\n\n".join(section.text for section in sections if section.text)
