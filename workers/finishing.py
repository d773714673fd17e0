"""What a model's finisher may use when the assembly finishes its result: the camera, its settings, the stores.

A registry entry may name a finisher ("module:function" under workers.models): `finish(enrichment, finishing)`
completes that model's section of the merged enrichment (a type named, metres added, a gallery matched) and
records in `finishing.unavailable` what it could not do. Finishers are pure but for the stores they are given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from workers.settings import DepthSettings


class Gallery(Protocol):
    def match_or_add(self, embedding: list[float], camera_id: str, now: float) -> dict[str, Any]: ...


class Baseline(Protocol):
    def score_and_learn(self, embedding: list[float], camera_id: str) -> dict[str, Any]: ...


@dataclass
class Finishing:
    """One event's finishing context; `unavailable` collects what a finisher could not do (name -> reason)."""

    camera_id: str
    depth: DepthSettings
    gallery: Gallery | None = None
    baseline: Baseline | None = None
    unavailable: dict[str, str] = field(default_factory=dict)


Finisher = Callable[[dict[str, Any], Finishing], None]
