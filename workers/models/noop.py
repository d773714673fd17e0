"""A model family that does nothing, instantly: what the pool costs around models, with the models taken away.

Swapped in for every model with `<NAME>_MODEL_FAMILY=noop:NoopModel` (scripts/bench.py --noop does this).
It holds no tensors, so the model cache charges it the registry's estimate: placement and eviction behave
as they would with the real models, without their memory or their compute.
"""

from __future__ import annotations

from workers.models.base import ModelFamily, ModelInput

MARKER = "noop.txt"  # its "weights": written by workers.generated.noop


class NoopModel(ModelFamily):
    """load/unload/infer that return at once; infer_batch() answers a batch in one call."""

    batchable = True

    def _load(self) -> None:
        marker = self.path / MARKER
        if not marker.exists():
            raise FileNotFoundError(f"no {MARKER} under {self.path}: write it with workers.generated.noop.write_noop")
        self.model = marker

    def infer_batch(self, batch: list[ModelInput]) -> list[dict]:
        return [{} for _ in batch]
