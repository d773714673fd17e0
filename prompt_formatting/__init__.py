"""Pure functions that turn an enrichment result into the Nemotron risk prompt and its sections.

The model side imports its shared tables from here too: threat_severity, SUSPICIOUS_POSTURES,
SCENE_TAG_PROMPTS, approximate_distance_m and parse_depth_calibration.
"""

from prompt_formatting.attributes import count_context_attributes
from prompt_formatting.distance import (
    DEFAULT_FAR_M,
    DEFAULT_NEAR_M,
    approximate_distance_m,
    depth_range_m,
    parse_depth_calibration,
)
from prompt_formatting.person import format_enhanced_clothing_context
from prompt_formatting.scene import format_clip_scene_context, format_depth_context, format_florence_scene_context
from prompt_formatting.sections import format_ondemand_enrichment_context
from prompt_formatting.template import build_risk_prompt
from prompt_formatting.untrusted import clean_text, quoted
from prompt_formatting.vehicle_animal import format_pet_context, format_vehicle_context
from prompt_formatting.vocabulary import (
    SCENE_TAG_PROMPTS,
    SEVERITIES,
    SUSPICIOUS_POSTURES,
    THREAT_SEVERITY,
    WEATHER_PROMPTS,
    describe_age,
    threat_severity,
)

__all__ = [
    "DEFAULT_FAR_M",
    "DEFAULT_NEAR_M",
    "SCENE_TAG_PROMPTS",
    "SEVERITIES",
    "SUSPICIOUS_POSTURES",
    "THREAT_SEVERITY",
    "WEATHER_PROMPTS",
    "approximate_distance_m",
    "build_risk_prompt",
    "clean_text",
    "count_context_attributes",
    "depth_range_m",
    "describe_age",
    "format_clip_scene_context",
    "format_depth_context",
    "format_enhanced_clothing_context",
    "format_florence_scene_context",
    "format_ondemand_enrichment_context",
    "format_pet_context",
    "format_vehicle_context",
    "parse_depth_calibration",
    "quoted",
    "threat_severity",
]
