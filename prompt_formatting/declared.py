"""What each model puts in the prompt, declared beside its formatter: @model_section(...) or model_purpose(...).

A declaration names the model (its registry name), the purpose the prompt names it by when it has no result,
and, for a model with a section, the area it prints in, its place there and where in the enrichment its result
sits. prompt_formatting.sections collects the declarations into the prompt's tables; a unit test holds them
against the model registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from prompt_formatting.facts import Section

SectionBuilder = Callable[[Any], Section]
# Where a section's input sits in the enrichment: key paths tried in order, the first present one wins.
Paths = tuple[tuple[str, ...], ...]


class Area(str, Enum):
    """Where in the prompt a section prints."""

    CONTEXT = "context"  # under "Visual Context": what the subject looks like and where it is
    ONDEMAND = "ondemand"  # under "On-Demand Analysis Results": the on-demand models' findings


@dataclass(frozen=True)
class ModelPrompt:
    """One model's part of the prompt."""

    model: str
    purpose: str  # what its result tells; named when the model produced none
    area: Area | None = None
    order: int = 0  # place within the area, lowest first
    paths: Paths = ()
    build: SectionBuilder | None = None


MODEL_PROMPTS: dict[str, ModelPrompt] = {}
# Sections the assembly writes itself, not a model (scene_context: local time, light, weather, picture).
ASSEMBLY_PROMPTS: dict[str, ModelPrompt] = {}


def declare(prompt: ModelPrompt, table: dict[str, ModelPrompt] = MODEL_PROMPTS) -> None:
    known = table.get(prompt.model)
    if known is not None and known != prompt:
        raise ValueError(f"{prompt.model!r} declares its prompt twice")
    table[prompt.model] = prompt


def model_section(model: str, *, purpose: str, area: Area, order: int,
                  paths: Paths | None = None) -> Callable[[SectionBuilder], SectionBuilder]:
    """Declare the decorated builder as `model`'s section; its input is read at `paths` (default: the model's name)."""

    def register(build: SectionBuilder) -> SectionBuilder:
        declare(ModelPrompt(model, purpose, area, order, paths or ((model,),), build))
        return build

    return register


def model_purpose(model: str, purpose: str) -> None:
    """Declare a model that prints no section of its own: only its purpose, named when it has no result."""
    declare(ModelPrompt(model, purpose))


def assembly_section(name: str, *, purpose: str, area: Area, order: int,
                     paths: Paths | None = None) -> Callable[[SectionBuilder], SectionBuilder]:
    """Declare the decorated builder as the section of an assembly step (not a model), read at `paths`."""

    def register(build: SectionBuilder) -> SectionBuilder:
        declare(ModelPrompt(name, purpose, area, order, paths or ((name,),), build), ASSEMBLY_PROMPTS)
        return build

    return register
