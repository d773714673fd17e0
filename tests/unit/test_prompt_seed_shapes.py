"""The seed document's result shapes, exactly as its code returns them, give the document's prompt sections.

Each input below is the dict the seed's code builds (Part 1.1 extract_security_context, Part 1.2
EnhancedClothingClassifier.classify, Part 2.4 PoseEstimator / ThreatDetector / AgeGenderPredictor /
ActionRecognizer, Part 3.1 reid_match); each expected text keeps the seed formatter's heading and line
wording, with outside text quoted and our additions (severity, suspicious flag, age range, guidance).
"""

from __future__ import annotations

import pytest

from prompt_formatting import (
    build_risk_prompt,
    count_context_attributes,
    format_enhanced_clothing_context,
    format_florence_scene_context,
    format_ondemand_enrichment_context,
)

SEED_FLORENCE = {
    "scene": "A man in a dark jacket stands at the side gate holding a crowbar.",
    "security_objects": {"labels": ["person", "crowbar", "backpack"],
                         "bboxes": [[10, 10, 90, 200], [60, 80, 70, 150], [20, 40, 50, 90]]},
    "text_regions": {"labels": ["7ABC123"], "quad_boxes": [[1, 2, 3, 2, 3, 4, 1, 4]]},
}
SEED_THREAT = {
    "threats_detected": True,
    "threats": [{"type": "knife", "confidence": 0.87, "bbox": [455.2, 402.9, 498.1, 461.0]}],
    "highest_threat": {"type": "knife", "confidence": 0.87, "bbox": [455.2, 402.9, 498.1, 461.0]},
}
SEED_POSE = {"poses": [
    {"keypoints": [[100.0, 200.0]] * 17, "confidence": 0.82, "posture": "crouching"},
    {"keypoints": [[300.0, 200.0]] * 17, "confidence": 0.7, "posture": "standing"},
]}
SEED_DEMOGRAPHICS = {"age_group": "young_adult", "gender": "male", "confidence": 0.71}
SEED_ACTION = {"top_action": "person picking lock", "confidence": 0.64,
               "all_scores": {"person picking lock": 0.64, "person using tool on door": 0.21, "person hiding": 0.05}}
SEED_REID_MATCH = {"identity": "John", "similarity": 0.92, "sighting_count": 5}


def test_seed_florence_result_gives_the_seed_scene_section():
    assert format_florence_scene_context(SEED_FLORENCE) == (
        "### Scene Analysis (Florence-2)\n"
        "\n**Scene Description:**\n"
        '"A man in a dark jacket stands at the side gate holding a crowbar."\n'
        '\n**Objects Detected:** "person", "crowbar", "backpack"\n'
        '- **HIGH RISK OBJECTS**: "crowbar"\n'
        '\n**Visible Text:** "7ABC123"'
    )


def test_seed_florence_result_nested_in_the_enrichment_scene_gives_the_same_section():
    assert format_florence_scene_context({"florence": SEED_FLORENCE}) == format_florence_scene_context(SEED_FLORENCE)


def test_florence_raw_answers_keyed_by_task_token_are_read():
    raw = {"scene": {"<MORE_DETAILED_CAPTION>": "A porch at night."},
           "security_objects": {"<OPEN_VOCABULARY_DETECTION>": {"bboxes": [[1, 2, 3, 4]], "bboxes_labels": ["knife"]}},
           "text_regions": {"<OCR_WITH_REGION>": {"quad_boxes": [], "labels": ["EXIT"]}}}
    text = format_florence_scene_context(raw)
    assert '"A porch at night."' in text and '- **HIGH RISK OBJECTS**: "knife"' in text and '"EXIT"' in text


def test_seed_threat_result_gives_the_seed_threat_section_with_severity():
    assert format_ondemand_enrichment_context({"threat": SEED_THREAT}) == (
        "### ⚠️ THREAT DETECTED\n- **Type**: KNIFE\n- **Severity**: high\n- **Confidence**: 87%\n"
        "- **Location**: [455, 403, 498, 461]"
    )


def test_seed_clean_threat_result_says_no_weapons():
    clean = {"threats_detected": False, "threats": [], "highest_threat": None}
    assert format_ondemand_enrichment_context({"threat": clean}) == "### Threat Detection\n- No weapons detected"


def test_seed_pose_result_lists_each_person_and_flags_suspicious_postures():
    assert format_ondemand_enrichment_context({"pose": SEED_POSE}) == (
        "### Body Posture Analysis\n"
        "- Person 1: crouching (confidence: 82%), a suspicious posture at a door or entrance\n"
        "- Person 2: standing (confidence: 70%)"
    )


def test_a_seed_pose_without_a_posture_still_names_the_person():
    pose = {"poses": [{"keypoints": [], "confidence": 0.4, "posture": "unknown"}]}
    assert format_ondemand_enrichment_context({"pose": pose}) == (
        "### Body Posture Analysis\n- Person 1: posture not determined")


def test_seed_demographics_give_age_group_in_words_and_the_guidance_line():
    assert format_ondemand_enrichment_context({"demographics": SEED_DEMOGRAPHICS}) == (
        "### Person Demographics\n- **Estimated age group**: young adult (about 18-29)\n- **Gender**: male\n"
        "- **Confidence**: 71%\n- Demographics never raise or lower risk on their own"
    )


def test_seed_action_all_scores_give_the_alternative_interpretations():
    assert format_ondemand_enrichment_context({"action": SEED_ACTION}) == (
        '### Detected Activity\n- **Primary action**: "person picking lock"\n- **Confidence**: 64%\n'
        '- **Alternative interpretations**: "person using tool on door" (21%), "person hiding" (5%)'
    )


def test_seed_top_level_reid_match_gives_the_seed_recognition_section():
    assert format_ondemand_enrichment_context({"reid_match": SEED_REID_MATCH}) == (
        '### Person Recognition\n- **Match**: "John"\n- **Similarity**: 92%\n- **Previous sightings**: 5 times'
    )


def test_seed_clothing_result_gives_the_seed_appearance_section():
    clothing = {
        "suspicious": {"top_match": "person in ski mask or balaclava", "confidence": 0.72, "all_scores": {}},
        "delivery": {"top_match": "UPS driver in brown uniform", "confidence": 0.55, "all_scores": {}},
        "carrying": {"top_match": "person with a backpack", "confidence": 0.4, "all_scores": {}},
        "casual": {"top_match": "person in casual everyday clothes", "confidence": 0.3, "all_scores": {}},
    }
    assert format_enhanced_clothing_context(clothing) == (
        '### Person Appearance Analysis\n- **ALERT**: "person in ski mask or balaclava" (confidence: 72%)\n'
        '- Service worker identified: "UPS driver in brown uniform" (55%)\n'
        '- Carrying: "person with a backpack" (40%)\n- General attire: "person in casual everyday clothes"'
    )


SEED_ENRICHMENT = {"threat": SEED_THREAT, "pose": SEED_POSE, "demographics": SEED_DEMOGRAPHICS,
                   "action": SEED_ACTION, "reid_match": SEED_REID_MATCH, "reid_embedding": [0.1, 0.2],
                   "scene": {"florence": SEED_FLORENCE}}


@pytest.mark.parametrize("key", sorted(set(SEED_ENRICHMENT) - {"reid_embedding"}))
def test_no_seed_shaped_section_is_ever_empty(key):
    prompt = build_risk_prompt({"detection_type": "person"}, {key: SEED_ENRICHMENT[key]}, {})
    assert count_context_attributes({key: SEED_ENRICHMENT[key]}) >= 1
    assert "## On-Demand Analysis Results" in prompt or "## Visual Context" in prompt


def test_seed_sections_keep_the_seed_order_threat_first():
    text = format_ondemand_enrichment_context(SEED_ENRICHMENT)
    headings = [line for line in text.splitlines() if line.startswith("### ")]
    assert headings == ["### ⚠️ THREAT DETECTED", "### Body Posture Analysis", "### Person Demographics",
                        "### Detected Activity", "### Person Recognition"]
