"""Person re-identification embeddings from OSNet x0.25 (torchreid): 512 floats, L2-normalised."""

from __future__ import annotations

from typing import Any

from workers.models.base import ModelInput
from workers.models.osnet_family import OsnetFamily

EMBEDDING_DIM = 512
EMBEDDING_DIGITS = 4


class ReidModel(OsnetFamily):
    """OSNet x0.25: person crop in, unit-length 512-d appearance embedding out (rounded for JSON)."""

    batchable = True

    def embed(self, image: Any) -> list[float]:
        """Unit-length embedding of one person crop."""
        return self.embed_many([image])[0]

    def embed_many(self, images: list[Any]) -> list[list[float]]:
        """Unit-length embeddings of person crops, in one forward pass."""
        return [[round(float(x), EMBEDDING_DIGITS) for x in row] for row in self.features(images).tolist()]

    def infer_batch(self, batch: list[ModelInput]) -> list[dict]:
        """Embeddings for each detection's crop, in one forward pass."""
        return [{"embedding": e, "dim": len(e)} for e in self.embed_many([inputs.person_crop() for inputs in batch])]
