"""Model-agnostic, process-local model cache: priorities, a byte budget, measured footprints, idle release."""

from model_cache.cache import CacheResult, ModelCache
from model_cache.errors import ModelOutOfMemory, ModelSkipped
from model_cache.spec import ModelSpec, Priority
from model_cache.stats import EVICT_REASONS, CacheObserver, CacheStats

__all__ = [
    "EVICT_REASONS",
    "CacheObserver",
    "CacheResult",
    "CacheStats",
    "ModelCache",
    "ModelOutOfMemory",
    "ModelSkipped",
    "ModelSpec",
    "Priority",
]
