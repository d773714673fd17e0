"""Golden files for every prompt formatter and the full risk prompt (UPDATE_GOLDEN=1 rewrites them).

Cases: our own model shapes (person_threat, person_face, vehicle, animal, partial_failure); the seed document's
shapes, built from the dicts its code returns (seed_*); and untrusted text trying to forge the prompt, one
case per kind of injection named in issue 15 point 8 (injection_*).
"""

from __future__ import annotations

import difflib
import json
import os
import unicodedata
from pathlib import Path

import pytest

from prompt_formatting import (
    build_risk_prompt,
    count_context_attributes,
    format_clip_scene_context,
    format_depth_context,
    format_enhanced_clothing_context,
    format_florence_scene_context,
    format_ondemand_enrichment_context,
    format_pet_context,
    format_vehicle_context,
)

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES = sorted(p.stem for p in (GOLDEN / "inputs").glob("*.json"))


def render(case: dict) -> str:
    """Every formatter's output for one case, under a marker line each."""
    event, enrichment, unavailable = case["event"], case["enrichment"], case["unavailable"]
    parts = {
        "format_enhanced_clothing_context": format_enhanced_clothing_context(enrichment.get("clothing")),
        "format_florence_scene_context": format_florence_scene_context(enrichment.get("scene")),
        "format_vehicle_context": format_vehicle_context(enrichment.get("vehicle")),
        "format_pet_context": format_pet_context(enrichment.get("pet")),
        "format_depth_context": format_depth_context(enrichment.get("depth")),
        "format_clip_scene_context": format_clip_scene_context(enrichment.get("scene")),
        "format_ondemand_enrichment_context": format_ondemand_enrichment_context(enrichment),
        "count_context_attributes": str(count_context_attributes(enrichment)),
        "build_risk_prompt": build_risk_prompt(event, enrichment, unavailable),
    }
    return "".join(f"===== {name} =====\n{text.rstrip()}\n" if text else f"===== {name} =====\n<empty>\n"
                   for name, text in parts.items())


SEED_CASES = [name for name in CASES if name.startswith("seed_")]
INJECTION_CASES = [name for name in CASES if name.startswith("injection_")]
PERSON_CASES = ["person_threat", "person_face", *SEED_CASES]


def load(name: str) -> dict:
    return json.loads((GOLDEN / "inputs" / f"{name}.json").read_text())


def test_there_are_golden_cases():
    assert {"person_threat", "person_face", "vehicle", "animal", "partial_failure"} <= set(CASES)
    assert {"seed_person_intruder", "seed_person_delivery"} <= set(SEED_CASES)
    assert {"injection_camera_id_heading", "injection_bidi_override", "injection_nul_bytes",
            "injection_markdown_sign_in_ocr", "injection_florence_tokens_in_caption",
            "injection_error_string_with_newlines"} <= set(INJECTION_CASES)


@pytest.mark.parametrize("name", PERSON_CASES)
def test_person_cases_state_at_least_twelve_context_attributes(name):
    assert count_context_attributes(load(name)["enrichment"]) >= 12


@pytest.mark.parametrize("name", INJECTION_CASES)
def test_injection_cases_cannot_forge_the_prompt(name):
    case = load(name)
    prompt = build_risk_prompt(case["event"], case["enrichment"], case["unavailable"])
    assert prompt.count("## Your answer") == 1
    assert not [c for c in prompt if c != "\n" and (unicodedata.category(c) in {"Cc", "Cf"} or c == "\ufffd")]
    assert "<loc_" not in prompt and "</s>" not in prompt and "<pad>" not in prompt
    assert "**HIGH RISK OBJECTS**: none" not in prompt


@pytest.mark.parametrize("name", CASES)
def test_prompt_matches_golden_file(name):
    actual = render(load(name))
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(actual, encoding="utf-8")
    assert golden.exists(), f"{golden} missing: run with UPDATE_GOLDEN=1 to create it"
    expected = golden.read_text(encoding="utf-8")
    diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), "golden", "actual"))
    assert actual == expected, f"prompt for {name} differs from {golden.name} (UPDATE_GOLDEN=1 to accept):\n{diff}"
