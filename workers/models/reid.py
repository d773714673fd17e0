"""Person re-identification embeddings from OSNet x0.25 (torchreid): 512 floats, L2-normalised."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from workers.finishing import Finishing
from workers.models.base import ModelInput
from workers.models.osnet_family import OsnetFamily

log = logging.getLogger(__name__)

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


def seed_reid_match(match: Mapping[str, Any]) -> dict[str, Any] | None:
    """The seed's top-level reid_match for a gallery answer, or None for a first sighting (no known person).

    The seed prints its sighting_count as "Previous sightings", so here it excludes this sighting; the
    gallery's own answer (reid.reid_match: new, cameras, first/last seen) counts it.
    """
    if match.get("new") is not False:
        return None
    return {
        "identity": match["identity"],
        "similarity": match["similarity"],
        "sighting_count": max(int(match["sighting_count"]) - 1, 0),
        "name": match.get("name"),
    }


def match_identity(enrichment: dict[str, Any], finishing: Finishing) -> None:
    """Attach the gallery's answer to the reid section, and the seed's reid_match to the enrichment when the
    person was seen before; a failing gallery is recorded as unavailable "reid_gallery"."""
    reid = enrichment.get("reid")
    if finishing.gallery is None or not reid or not reid.get("embedding"):
        return
    try:
        match = finishing.gallery.match_or_add(reid["embedding"], finishing.camera_id, time.time())
    except Exception as exc:
        log.warning("re-identification gallery unavailable: %s", exc)
        finishing.unavailable["reid_gallery"] = f"error: {exc}"
        return
    reid["reid_match"] = match
    seed_match = seed_reid_match(match)
    if seed_match is not None:
        enrichment["reid_match"] = seed_match
