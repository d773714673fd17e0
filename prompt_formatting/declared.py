"""What each model puts in the prompt, and the shape of its result, declared beside its formatter.

@model_section(...) or model_purpose(...) names the model (its registry name), the purpose the prompt names it by
when it has no result, and, for a model with a section, the area it prints in, its place there and where in the
enrichment its result sits. @result_section(...) on a pydantic class declares the typed shape of one section of
the stored enrichment (the result contract, tasks/contract.py). prompt_formatting.sections collects the
declarations; unit tests hold them against the model registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, model_serializer

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


class ResultShape(BaseModel):
    """A part of the stored enrichment: the seed document's keys typed, fields of ours beside them allowed.

    Dumped as it was given: an optional field that was not there stays out (never written as null).
    """

    model_config = ConfigDict(extra="allow")

    @model_serializer(mode="wrap")
    def _as_given(self, handler: Any) -> Any:
        data = handler(self)
        if not isinstance(self, ResultShape):
            return data
        given = self.model_fields_set | set(self.model_extra or {})
        return {key: value for key, value in data.items() if key in given}


@dataclass(frozen=True)
class ResultSection:
    """One section of the stored enrichment: where it sits, its shape, and the registered model that fills it
    (None for a section assembled from several)."""

    path: tuple[str, ...]  # ("threat",), ("scene", "florence")
    shape: type[ResultShape]
    model: str | None


RESULT_SECTIONS: dict[tuple[str, ...], ResultSection] = {}
Shape = TypeVar("Shape", bound=type[ResultShape])


def result_section(path: str, *, model: str | None) -> Callable[[Shape], Shape]:
    """Declare the decorated class as the shape of the enrichment's section at `path` ("threat", "scene.florence"),
    filled by `model` (its registry name). Adding a section to the result contract is this one declaration."""

    def register(shape: Shape) -> Shape:
        section = ResultSection(tuple(path.split(".")), shape, model)
        known = RESULT_SECTIONS.get(section.path)
        if known is not None and known.shape.__qualname__ != shape.__qualname__:
            raise ValueError(f"section {path!r} declared twice ({known.shape.__name__}, {shape.__name__})")
        RESULT_SECTIONS[section.path] = section
        return shape

    return register
