"""Which sections the prompt holds, in what order, and where in the enrichment each finds its model's result.

Collected from the formatter modules' own declarations (prompt_formatting.declared): every module of this
package is imported, so a new formatter module is found without an edit here.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

import prompt_formatting
from prompt_formatting.declared import (
    ASSEMBLY_PROMPTS,
    MODEL_PROMPTS,
    RESULT_SECTIONS,
    Area,
    ModelPrompt,
    Paths,
    ResultSection,
    SectionBuilder,
)
from prompt_formatting.facts import Section, join_sections
from prompt_formatting.values import mapping


def find(enrichment: Any, paths: Paths) -> Any:
    """The value at the first key path present in the enrichment (None when none is)."""
    for path in paths:
        value: Any = enrichment
        for key in path:
            value = mapping(value).get(key)
        if value is not None:
            return value
    return None


@cache
def _import_formatters() -> None:
    for module in pkgutil.iter_modules(prompt_formatting.__path__):
        importlib.import_module(f"{prompt_formatting.__name__}.{module.name}")


def declared_prompts() -> dict[str, ModelPrompt]:
    """Every model's declared prompt part, by model name (imports each formatter module, once per process)."""
    _import_formatters()
    return MODEL_PROMPTS


def declared_results() -> dict[tuple[str, ...], ResultSection]:
    """Every declared section of the stored enrichment, by its path ("scene", "florence")."""
    _import_formatters()
    return RESULT_SECTIONS


@cache
def area_table(area: Area) -> tuple[tuple[Paths, SectionBuilder], ...]:
    """The sections of one area, in their declared order: (where the input sits, the builder)."""
    every = [*declared_prompts().values(), *ASSEMBLY_PROMPTS.values()]
    declared = sorted((p for p in every if p.area is area and p.build), key=lambda p: p.order)
    return tuple((p.paths, p.build) for p in declared if p.build is not None)


def build_sections(area: Area, enrichment: Any) -> list[Section]:
    """The area's sections, each built from its place in the enrichment dict (missing ones give empty sections)."""
    return [build(find(enrichment, paths)) for paths, build in area_table(area)]


def purposes() -> dict[str, str]:
    """What each model's result tells, by model name."""
    return {name: prompt.purpose for name, prompt in declared_prompts().items()}


def format_ondemand_enrichment_context(enrichment: dict) -> str:
    """Threat, posture, demographics, activity and recognition sections, or "" when none has content."""
    return join_sections(build_sections(Area.ONDEMAND, enrichment))
