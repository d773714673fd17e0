"""What the cache needs to know about a model: its name, size estimate, priority, and how to load it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class Priority(IntEnum):
    """How much a model is worth keeping: its value is its weight in the choice of victim, not a rank.

    RESIDENT (the scene models) weighs most and is never released for idleness; like every model not in
    use it can still be evicted to make room.
    """

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4
    RESIDENT = 5

    @property
    def weight(self) -> float:
        """The factor a model's demand per byte is multiplied by when the cache weighs whom to keep."""
        return float(self.value)


@dataclass(frozen=True)
class ModelSpec:
    """A loadable model as the cache sees it. `loader()` returns the loaded object."""

    name: str
    estimated_mb: float
    priority: Priority
    loader: Callable[[], Any]
    unloader: Callable[[Any], None] | None = None

    @property
    def estimated_bytes(self) -> int:
        return int(self.estimated_mb * 1024 * 1024)
