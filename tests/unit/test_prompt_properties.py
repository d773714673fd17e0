"""Hypothesis: any partial or malformed enrichment (seed shapes or ours) formats without raising and never prints a null."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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

NULLISH = re.compile(r"\bNone\b|\bnull\b|\bnan\b|\binf\b|\{\}|\[\]|\(\)", re.IGNORECASE)

WORDS = ["person", "knife", "crowbar", "dog", "van", "crouching", "standing", "very_close", "far", "25-32", "male",
         "front_door", "person-0001", "Dana", "hoodie", "", "  ", "None", "null", "unknown", "young_adult", "60+",
         "background", "pedestrian", "cars", "gun", "critical", "lying_down", "<loc_1>", "a person at night"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 200), st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 1), st.sampled_from(WORDS),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.sampled_from(
        ["label", "confidence", "top_k", "score", "type", "bbox", "top_match", "posture", "posture_confidence",
         "persons_detected", "age", "gender", "top_action", "top_actions", "action", "identity", "name",
         "similarity", "sighting_count", "cameras", "first_seen", "new", "caption", "labels", "proximity",
         "relative_depth", "highest_threat", "detections", "threats_detected", "face_source", "threats", "severity",
         "poses", "suspicious", "age_group", "all_scores", "scene", "distance_m", "tags", "anomaly", "unusual",
         "baseline_count", "vehicle_type", "pet_type", "bboxes_labels"]), inner, max_size=6)),
    max_leaves=12,
)

# Shapes close to the contracts, with any key possibly missing or of the wrong type.
section = st.fixed_dictionaries({}, optional={
    "label": values, "confidence": values, "top_k": values, "posture": values, "posture_confidence": values,
    "persons_detected": values, "threats_detected": values, "highest_threat": values, "detections": values,
    "age": values, "gender": values, "top_action": values, "top_actions": values, "proximity": values,
    "relative_depth": values, "reid_match": values, "florence": values, "caption": values,
    "security_objects": values, "text_regions": values, "threats": values, "poses": values, "age_group": values,
    "all_scores": values, "scene": values, "distance_m": values, "clip": values, "tags": values, "anomaly": values,
    "vehicle_type": values, "pet_type": values,
    **{k: values for k in ("suspicious", "delivery", "utility", "carrying", "casual")},
})
enrichments = st.dictionaries(
    st.sampled_from(["clothing", "vehicle", "pet", "depth", "pose", "threat", "demographics", "reid", "action", "scene",
                     "reid_match", "florence", "clip"]),
    st.one_of(st.none(), section, values),
    max_size=13,
)
events = st.dictionaries(
    st.sampled_from(["camera_id", "timestamp", "detection_type", "confidence", "bbox", "face_visible",
                     "suspicious_score"]),
    values, max_size=7,
)
unavailables = st.dictionaries(st.sampled_from(["threat", "pose", "clip", "mystery"]),
                               st.one_of(st.none(), st.sampled_from(WORDS)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=events, enrichment=enrichments, unavailable=unavailables)
def test_any_partial_enrichment_formats_without_nulls(event, enrichment, unavailable):
    outputs = [
        build_risk_prompt(event, enrichment, unavailable),
        format_ondemand_enrichment_context(enrichment),
        format_enhanced_clothing_context(enrichment.get("clothing")),
        format_florence_scene_context(enrichment.get("scene")),
        format_vehicle_context(enrichment.get("vehicle")),
        format_pet_context(enrichment.get("pet")),
        format_depth_context(enrichment.get("depth")),
        format_clip_scene_context(enrichment.get("scene")),
    ]
    for text in outputs:
        assert isinstance(text, str)
        assert not NULLISH.search(text), text
    assert count_context_attributes(enrichment) >= 0


@settings(max_examples=60, deadline=None)
@given(enrichment=enrichments)
def test_sections_with_content_always_state_a_fact_line(enrichment):
    text = format_ondemand_enrichment_context(enrichment)
    for block in filter(None, text.split("\n\n")):
        heading, *lines = block.splitlines()
        assert heading.startswith("### ") and lines
