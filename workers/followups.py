"""Models the first models' evidence asks for: a follow-up model runs in a second round, after the records of
the first, when its rule finds a reason in them (a crouching posture asks for action recognition; a face found
asks for age and gender on that face).

A registry entry names its rule ("module:function" under workers.models) in `follows`; the rule is pure:
`rule(enrichment, event) -> Ask | None`, where `enrichment` is the first round's merged sections and `event`
the routed event's summary (a mapping or a model with the event's fields).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Ask:
    """A follow-up wanted: why (for the prompt and the result), what its request changes, and what it lacks."""

    reason: str  # what asked for it, in words: "a crouching posture", "a face found"
    request: dict[str, Any] = field(default_factory=dict)  # ModelRequest fields to set (face_bbox ...)
    missing: str | None = None  # why it cannot run although asked (the event has no frames): noted, not run


FollowRule = Callable[[dict[str, Any], Any], "Ask | None"]


def event_field(event: Any, name: str, default: Any = None) -> Any:
    """A field of the event summary, whether it is a mapping or a model."""
    if isinstance(event, dict):
        return event.get(name, default)
    return getattr(event, name, default)
