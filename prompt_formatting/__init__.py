"""Pure functions that turn an enrichment result into the Nemotron risk prompt and its sections."""

from prompt_formatting.attributes import count_context_attributes
from prompt_formatting.person import format_enhanced_clothing_context
from prompt_formatting.scene import format_depth_context, format_florence_scene_context
from prompt_formatting.sections import format_ondemand_enrichment_context
from prompt_formatting.template import build_risk_prompt
from prompt_formatting.vehicle_animal import format_pet_context, format_vehicle_context

__all__ = [
    "build_risk_prompt",
    "count_context_attributes",
    "format_depth_context",
    "format_enhanced_clothing_context",
    "format_florence_scene_context",
    "format_ondemand_enrichment_context",
    "format_pet_context",
    "format_vehicle_context",
]
