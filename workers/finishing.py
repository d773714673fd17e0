"""What a model's finisher may use when the assembly finishes its result: the camera, its settings, the stores.

A registry entry may name a finisher ("module:function" under workers.models): `finish(enrichment, finishing)`
completes that model's section of the merged enrichment (a type named, metres added, a gallery matched) and
records in `finishing.unavailable` what it could not do. Finishers are pure but for the stores they are given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from workers.settings import DepthSettings


class Gallery(Protocol):
    def match_or_add(self, embedding: list[float], camera_id: str, now: float) -> dict[str, Any]: ...


class Baseline(Protocol):
    def score_and_learn(self, embedding: list[float], camera_id: str) -> dict[str, Any]: ...


class HouseholdStore(Protocol):
    """What finishers ask of the household (tasks.household.Household): faces, plates and named re-ID identities."""

    def match_face(self, embedding: Any, model_id: str, when: datetime | None = None) -> dict[str, Any]: ...

    def match_plate(self, text: str) -> Any: ...

    def identity_member(self, identity: str) -> Any: ...

    def remember_face(self, event_id: str, embedding: Any, model_id: str, seconds: int) -> None: ...


@dataclass
class Finishing:
    """One event's finishing context; `unavailable` collects what a finisher could not do (name -> reason)."""

    camera_id: str
    depth: DepthSettings
    gallery: Gallery | None = None
    baseline: Baseline | None = None
    household: HouseholdStore | None = None
    event: Any = None  # the DetectionEvent: its box, time and the backend's face_visible hint
    local_time: datetime | None = None  # the event's time at the camera (a member's schedule is read in it)
    face_retention_seconds: int = 0  # how long an event's face vector is kept for enrolment from the event
    unavailable: dict[str, str] = field(default_factory=dict)


Finisher = Callable[[dict[str, Any], Finishing], None]
