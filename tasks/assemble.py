"""assemble: the chord callback that turns one event's model records into the stored, prompt-ready result."""

from __future__ import annotations

import logging
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
from tasks.schemas import EnrichmentResult, RoutedEvent
from workers.frames import FrameStore
from workers.settings import get_settings

log = logging.getLogger(__name__)


def finish_event(records: Iterable[Mapping[str, Any] | None], routed: RoutedEvent) -> dict:
    """Build, store and announce the EnrichmentResult of one routed event; delete its frames; close its ledger."""
    settings = get_settings()
    result = assemble_result(
        records, routed, ReidGallery.configured(redis_client(), settings.reid),
        baseline=SceneBaseline.configured(redis_client(), settings.scene), depth=settings.depth,
    )
    with redis_client().pipeline(transaction=True) as pipe:  # one round trip: store once, clean up, close
        saved = result_store().save_in(pipe, result)
        FrameStore(redis_client(), settings.frame_ttl_seconds).delete(routed.owned_keys, pipe)
        Ledger(redis_client()).close(result.event_id, pipe)
        payload = saved(pipe.execute()[0])
    EVENTS.labels(result.status).inc()
    ASSEMBLY_SECONDS.observe(time.time() - routed.routed_at)
    return payload


@app.task(name="assemble")
def assemble(records: list[dict], event: str) -> dict:
    """Chord callback: records from every model task of one event, and the event's id.

    What the event is, which keys it owns and its deadline are read from the ledger entry the router wrote before
    any model task was sent, never from this message: the chord carries only the id. Anything else in its
    place (a RoutedEvent, say) changes nothing.
    """
    if not isinstance(event, str):
        log.warning("assemble refused: its event argument is a %s, not an event id", type(event).__name__)
        return {"error": "assemble takes an event id; the event itself is read from the ledger"}
    routed = Ledger(redis_client()).routed(event)
    if routed is None:  # the sweeper finished the event first (and closed its entry), or the entry expired
        stored = result_store().get(event)
        if stored is not None:
            return stored
        return EnrichmentResult(event_id=event, status="partial", errors={
            "event_id": "the event's routing record was gone when its models finished"}).model_dump(mode="json")
    return finish_event(records, routed)
