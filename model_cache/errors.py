"""How the cache says no: a model it will not load, and a model that ran out of memory twice."""

from __future__ import annotations


class ModelSkipped(Exception):
    """The model cannot fit at all: it is bigger than the whole budget, or models in use hold the rest.

    Any model not in use is evicted to serve a request, whatever its priority, so this is the only refusal.
    `reason` names the model, the bytes it needed, and the models in use that hold the budget.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ModelOutOfMemory(RuntimeError):
    """Out of memory again after evicting what the cache could and retrying once."""
