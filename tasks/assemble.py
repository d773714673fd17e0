"""assemble: the chord callback that turns one event's model records into the stored, prompt-ready result."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from tasks.celery import app
from tasks.connection import redis_client, result_store
from tasks.ledger import Ledger
from tasks.metrics import ASSEMBLY_SECONDS, EVENTS
from tasks.pipeline import assemble_result
from tasks.reid_gallery import ReidGallery
from tasks.scene_baseline import SceneBaseline
from tasks.schemas import RoutedEvent
from workers.frames import FrameStore
from workers.settings import get_settings


def finish_event(records: Iterable[Mapping[str, Any] | None], routed: RoutedEvent) -> dict:
    """Build, store and announce the EnrichmentResult of one routed event; delete its frames; close its ledger."""
    settings = get_settings()
    result = assemble_result(
        records, routed, ReidGallery.configured(redis_client(), settings.reid),
        baseline=SceneBaseline.configured(redis_client(), settings.scene), depth=settings.depth,
    )
    payload = result_store().save(result)
    EVENTS.labels(result.status).inc()
    ASSEMBLY_SECONDS.observe(time.time() - routed.routed_at)
    FrameStore(redis_client(), settings.frame_ttl_seconds).delete(routed.owned_keys)
    Ledger(redis_client()).close(result.event_id)
    return payload


@app.task(name="assemble")
def assemble(records: list[dict], routed: dict[str, Any]) -> dict:
    """Chord callback: records from every model task of one event, plus the router's RoutedEvent."""
    return finish_event(records, RoutedEvent.model_validate(routed))
