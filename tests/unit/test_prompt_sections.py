"""Behaviour of the prompt sections: seed thresholds, flags, omissions and the unavailable-model notice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prompt_formatting import (
    build_risk_prompt,
    count_context_attributes,
    format_depth_context,
    format_enhanced_clothing_context,
    format_florence_scene_context,
    format_ondemand_enrichment_context,
    format_pet_context,
    format_vehicle_context,
)

INPUTS = Path(__file__).resolve().parent.parent / "golden" / "inputs"


def load(name: str) -> dict:
    return json.loads((INPUTS / f"{name}.json").read_text())


def category(match: str, confidence: float) -> dict:
    return {"top_match": match, "confidence": confidence, "all_scores": {match: confidence}}


@pytest.mark.parametrize(
    "formatter",
    [format_enhanced_clothing_context, format_florence_scene_context, format_vehicle_context, format_pet_context,
     format_depth_context],
)
@pytest.mark.parametrize("value", [None, {}, {"unrelated": 1}])
def test_missing_sections_format_to_empty_string(formatter, value):
    assert formatter(value) == ""


def test_ondemand_context_is_empty_without_results():
    assert format_ondemand_enrichment_context({}) == ""
    assert format_ondemand_enrichment_context({"threat": None, "pose": {}, "reid": {"embedding": [1.0]}}) == ""


def test_suspicious_attire_alerts_only_above_sixty_percent():
    assert format_enhanced_clothing_context({"suspicious": category("person in ski mask or balaclava", 0.6)}) == ""
    text = format_enhanced_clothing_context({"suspicious": category("person in ski mask or balaclava", 0.61)})
    assert text == "### Person Appearance Analysis\n- **ALERT**: person in ski mask or balaclava (confidence: 61%)"


def test_service_worker_needs_more_than_half_confidence():
    assert "Service worker" not in format_enhanced_clothing_context({"delivery": category("UPS driver in brown uniform", 0.5)})
    text = format_enhanced_clothing_context({"delivery": category("UPS driver in brown uniform", 0.51)})
    assert "- Service worker identified: UPS driver in brown uniform (51%)" in text


def test_carrying_and_attire_are_always_reported():
    text = format_enhanced_clothing_context(
        {"carrying": category("person with a backpack", 0.2), "casual": category("person in business casual attire", 0.1)}
    )
    assert text.splitlines()[1:] == ["- Carrying: person with a backpack (20%)", "- General attire: person in business casual attire"]


def test_high_risk_objects_are_flagged_by_substring():
    scene = {"florence": {"security_objects": {"labels": ["person", "kitchen knife", "toolbox", "bag"]}}}
    text = format_florence_scene_context(scene)
    assert "**Objects Detected:** person, kitchen knife, toolbox, bag" in text
    assert "- **HIGH RISK OBJECTS**: kitchen knife, toolbox" in text


def test_scene_accepts_florence_dict_directly():
    assert "A cat on a porch." in format_florence_scene_context({"caption": "A cat on a porch."})


def test_threat_comes_first_and_names_the_weapon():
    enrichment = load("person_threat")["enrichment"]
    text = format_ondemand_enrichment_context(enrichment)
    assert text.startswith("### ⚠️ THREAT DETECTED\n- **Type**: KNIFE\n- **Confidence**: 87%")
    assert text.index("THREAT") < text.index("Body Posture") < text.index("Detected Activity") < text.index("Person Recognition")


def test_threat_without_highest_uses_most_confident_detection():
    threat = {"threats_detected": True, "detections": [{"type": "knife", "confidence": 0.6}, {"type": "gun", "confidence": 0.9}]}
    text = format_ondemand_enrichment_context({"threat": threat})
    assert "- **Type**: GUN" in text and "- **Other detections**: knife (60%)" in text


def test_clean_threat_run_says_no_weapons():
    text = format_ondemand_enrichment_context({"threat": {"threats_detected": False, "highest_threat": None, "detections": []}})
    assert text == "### Threat Detection\n- No weapons detected"


def test_returning_person_shows_name_history_and_cameras():
    text = format_ondemand_enrichment_context(load("person_face")["enrichment"])
    assert "- **Match**: Dana (identity person-0007)" in text
    assert "- **Sightings**: 14 (including this one)" in text
    assert "- **Seen on cameras**: driveway, front_door" in text


def test_new_identity_is_reported_as_first_sighting():
    text = format_ondemand_enrichment_context(load("person_threat")["enrichment"])
    assert "- **Match**: none, first sighting (registered as person-0042)" in text
    assert "Sightings" not in text


def test_action_alternatives_exclude_the_primary_action():
    action = {"top_action": "person running", "confidence": 0.5,
              "top_actions": [{"action": "person running", "score": 0.5}, {"action": "person hiding", "score": 0.3}]}
    text = format_ondemand_enrichment_context({"action": action})
    assert "- **Alternative interpretations**: person hiding (30%)" in text


def test_unknown_posture_is_left_out():
    assert format_ondemand_enrichment_context({"pose": {"posture": "unknown", "persons_detected": 0}}) == ""


def test_vehicle_and_pet_show_label_and_alternatives():
    assert format_vehicle_context(load("vehicle")["enrichment"]["vehicle"]).splitlines()[1:] == [
        "- **Vehicle type**: pickup truck (confidence: 91%)",
        "- **Alternatives**: van (5%), car (2%)",
    ]
    assert "- **Animal**: dog (confidence: 88%)" in format_pet_context({"label": "dog", "confidence": 0.88})


def test_depth_names_the_proximity():
    assert "very close" in format_depth_context({"relative_depth": 0.05, "proximity": "very_close"})


def test_full_person_enrichment_reaches_twelve_attributes():
    assert count_context_attributes(load("person_face")["enrichment"]) >= 12
    assert count_context_attributes(load("person_threat")["enrichment"]) >= 12


def test_attribute_count_grows_with_each_fact_and_ignores_qualifiers():
    base = {"vehicle": {"label": "van"}}
    assert count_context_attributes({}) == 0
    assert count_context_attributes(base) == 1
    assert count_context_attributes({"vehicle": {"label": "van", "confidence": 0.9, "top_k": [{"label": "car", "score": 0.1}]}}) == 1
    assert count_context_attributes({**base, "depth": {"proximity": "far"}}) == 2
    scene = {"florence": {"caption": "x", "security_objects": {"labels": ["bag", "bag", "box"]}}}
    assert count_context_attributes({"scene": scene}) == 3


def test_prompt_names_unavailable_models_with_their_purpose():
    case = load("partial_failure")
    prompt = build_risk_prompt(case["event"], case["enrichment"], case["unavailable"])
    assert "## Unavailable Analyses" in prompt
    assert "- threat (weapon detection): timeout: no result within 30 s" in prompt
    assert "do not read their silence as evidence that the event is safe" in prompt


def test_prompt_without_failures_has_no_unavailable_section():
    case = load("person_face")
    assert "Unavailable" not in build_risk_prompt(case["event"], case["enrichment"], {})


def test_prompt_carries_detection_header_and_asks_for_json():
    case = load("person_threat")
    prompt = build_risk_prompt(case["event"], case["enrichment"], {})
    for line in ("- Camera: back_door", "- Time: 2026-01-19 02:14:07 UTC", "- Detection type: person",
                 "- Detector confidence: 91%", "- Bounding box (pixels, x1 y1 x2 y2): [412, 188, 604, 655]"):
        assert line in prompt
    assert '"risk_score": <integer 0-100>' in prompt and '"reasoning"' in prompt
    assert "## On-Demand Analysis Results" in prompt
    assert "Threat detection results are HIGH PRIORITY" in prompt


def test_face_visible_is_only_mentioned_for_people():
    case = load("vehicle")
    assert "Face visible" not in build_risk_prompt(case["event"], case["enrichment"], {})
