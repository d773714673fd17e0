"""How the cache says no: a model it will not load, and a model that ran out of memory twice."""

from __future__ import annotations


class ModelSkipped(Exception):
    """The model cannot fit in the budget without evicting a model that outranks it (or at all).

    `reason` names the model, the bytes it needed, and what holds the rest of the budget.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ModelOutOfMemory(RuntimeError):
    """Out of memory again after evicting what the cache could and retrying once."""
