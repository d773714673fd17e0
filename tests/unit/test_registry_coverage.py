"""Every per-model table covers exactly the registered models: a new model missing from one fails here.

The registry (workers/registry.py) is the list of models. Beside it, each model declares its prompt part and its
result section's shape next to its formatter (prompt_formatting), its finisher and family in its own module
(workers/models), and its random-weights writer in the fixtures (scripts/fixtures/weights). README's model table
names each one too.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from prompt_formatting.declared import Area
from prompt_formatting.sections import declared_prompts, declared_results
from scripts.fixtures.weights import writers
from workers.models.base import ModelFamily
from workers.registry import ESTIMATE_SOURCES, MODELS, REGISTRY, DirectFile, HubRepo

README = Path(__file__).resolve().parents[2] / "README.md"
NAMES = sorted(REGISTRY)


def differences(table: set[str]) -> dict[str, list[str]]:
    return {"registered but missing": sorted(set(NAMES) - table), "not a registered model": sorted(table - set(NAMES))}


def test_model_names_are_unique_and_lower_snake_case():
    assert len(MODELS) == len(REGISTRY)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in NAMES)


def test_every_model_declares_its_prompt_part_and_only_registered_models_do():
    assert differences(set(declared_prompts())) == {"registered but missing": [], "not a registered model": []}


def test_every_model_has_a_random_weights_writer_and_only_registered_models_do():
    assert differences(set(writers())) == {"registered but missing": [], "not a registered model": []}


def test_prompt_sections_have_distinct_places_in_their_area():
    for area in Area:
        orders = [p.order for p in declared_prompts().values() if p.area is area]
        assert len(orders) == len(set(orders)), f"two sections share a place in {area.value}"


def test_every_purpose_is_one_readable_line():
    for name, prompt in declared_prompts().items():
        assert prompt.purpose and "\n" not in prompt.purpose and len(prompt.purpose) < 80, name


@pytest.mark.parametrize("name", NAMES)
def test_family_and_finisher_references_resolve(name):
    entry = REGISTRY[name]
    assert issubclass(entry.load_class(), ModelFamily)
    finish = entry.finisher()
    if finish is not None:
        assert list(inspect.signature(finish).parameters) == ["enrichment", "finishing"]


@pytest.mark.parametrize("name", NAMES)
def test_estimate_and_download_source_are_declared(name):
    entry = REGISTRY[name]
    assert entry.estimated_mb > 0 and entry.estimate_source in ESTIMATE_SOURCES
    assert isinstance(entry.source, (HubRepo, DirectFile))


def test_readme_model_table_names_every_model():
    rows = re.findall(r"^\| ([a-z_0-9]+) \| \d+ \|", README.read_text(), flags=re.MULTILINE)
    assert sorted(rows) == NAMES


def registry_section_path(name: str) -> tuple[str, ...]:
    """Where assembly puts a model's result: its registry section, scene models under scene.<name>."""
    entry = REGISTRY[name]
    return ("scene", name) if entry.section == "scene" else (entry.section,)


def test_every_model_declares_the_shape_of_its_result_section():
    declared = declared_results()
    missing = [name for name in NAMES if registry_section_path(name) not in declared]
    assert not missing, f"no @result_section for the sections of {missing}"
    wrong = {name: declared[registry_section_path(name)].model for name in NAMES
             if declared[registry_section_path(name)].model != name}
    assert not wrong, f"sections declared for another model: {wrong}"


def test_every_declared_section_names_a_registered_model_or_none():
    strays = {".".join(path): s.model for path, s in declared_results().items()
              if s.model is not None and s.model not in REGISTRY}
    assert not strays
