"""A model family that does nothing, instantly: what the pool costs around models, with the models taken away.

Swapped in for every model with `<NAME>_MODEL_FAMILY=noop:NoopModel` (scripts/bench.py --noop does this).
It holds no tensors, so the model cache charges it the registry's estimate: placement and eviction behave
as they would with the real models, without their memory or their compute.
"""

from __future__ import annotations

from pathlib import Path

from workers.models.base import ModelInput

MARKER = "noop.txt"


class NoopModel:
    """load/unload/infer that return at once; infer_batch() answers a batch in one call."""

    def __init__(self, path: str, device: str):
        self.path = path
        self.device = device
        self.loaded = False

    def load(self) -> None:
        if not (Path(self.path) / MARKER).exists():
            raise FileNotFoundError(f"no {MARKER} under {self.path}: write it with workers.models.noop.write_tiny")
        self.loaded = True

    def unload(self) -> None:
        self.loaded = False

    def infer(self, inputs: ModelInput) -> dict:
        return {}

    def infer_batch(self, batch: list[ModelInput]) -> list[dict]:
        return [{} for _ in batch]


def write_tiny(dest: Path, full_size: bool = False) -> None:
    """A marker file: the weights of a model that has none."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MARKER).write_text("no-op model for orchestration benchmarks\n")
