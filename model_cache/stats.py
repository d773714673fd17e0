"""Cache counters, and the hooks a metrics layer (e.g. Prometheus) attaches to."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Why a model left the cache; also the label values an observer sees in on_evict().
EVICT_REASONS = {
    "room": "made room for a model being loaded",
    "idle": "unused for longer than idle_seconds",
    "oom": "freed after an out-of-memory error, before the one retry",
    "explicit": "evict(name) was called",
    "clear": "clear() was called",
}


@dataclass
class CacheStats:
    """Monotonic counters since the cache was created (safe to export as Prometheus counters).

    Every get() is a hit or a miss; every miss ends as a load, a skip or a load failure.
    """

    hits: int = 0
    misses: int = 0
    loads: int = 0
    evictions: int = 0
    skips: int = 0
    load_failures: int = 0
    oom_retries: int = 0
    bytes_loaded: int = 0
    load_seconds: float = 0.0

    def as_dict(self) -> dict[str, int | float]:
        return asdict(self) | {"load_seconds": round(self.load_seconds, 4)}


class CacheObserver:
    """Called by the cache as things happen, outside its lock; override the events you care about.

    Keep these fast: they run on the requesting thread. Exceptions are logged and swallowed.
    """

    def on_hit(self, name: str) -> None:
        """A get() found the model already loaded."""

    def on_miss(self, name: str) -> None:
        """A get() found the model absent; a load, skip or failure follows."""

    def on_load(self, name: str, seconds: float, nbytes: int) -> None:
        """A model entered the cache after `seconds` of loading, charged `nbytes` to the budget."""

    def on_evict(self, name: str, reason: str) -> None:
        """A model left the cache; reason is a key of EVICT_REASONS."""

    def on_skip(self, name: str, reason: str) -> None:
        """A get() was refused with ModelSkipped(reason)."""
