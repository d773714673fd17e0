"""enrich_detection: admit the event, store its frames once, plan and place models, hand over to a chord."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import chord
from kombu.utils.uuid import uuid

from tasks.admission import AdmittedEvent, Rejected, admit, parse_event
from tasks.assemble import assemble, finish_event
from tasks.celery import app
from tasks.connection import redis_client, result_store
from tasks.ledger import Ledger
from tasks.metrics import EVENTS
from tasks.model_task import run_model
from tasks.pipeline import frame_keys, plan, route
from tasks.placement import place_models
from tasks.risk_task import assess_event_risk
from tasks.schemas import EnrichmentResult, RoutedEvent
from workers.frames import FrameStore
from workers.registry import estimated_bytes
from workers.settings import Settings, get_settings
from workers.state import live_workers

log = logging.getLogger(__name__)


def reject(event: Any, errors: dict[str, str], task_id: str | None) -> dict:
    """Store and return a 'rejected' result naming the bad field(s)."""
    event_id = event.get("event_id") if isinstance(event, dict) else None
    if not isinstance(event_id, str) or not event_id or len(event_id) > 128:
        event_id = f"rejected-{task_id}"
    camera = event.get("camera_id") if isinstance(event, dict) else None
    result = EnrichmentResult(
        event_id=event_id, status="rejected", errors=errors, camera_id=camera if isinstance(camera, str) else None,
    )
    log.info("rejected event %s: %s", event_id, errors)
    EVENTS.labels("rejected").inc()
    return result_store().save(result)


def dispatch(admitted: AdmittedEvent, settings: Settings, received_at: float) -> tuple[RoutedEvent, Any]:
    """Store the frames once, plan and place the models; the routed event and its chord (None: no model)."""
    keys = frame_keys(admitted)
    FrameStore(redis_client(), settings.frame_ttl_seconds).put_many(keys.to_write)
    models = plan(admitted, settings)
    workers = live_workers(redis_client(), max_age_seconds=settings.heartbeat_seconds * 3)
    placement = place_models(models, workers, settings.device_queues, estimated_bytes(), settings.affinity_routing)
    routed, requests = route(admitted, keys, models, placement, {model: uuid() for model in models}, received_at)
    if not models:
        return routed, None
    header = [
        run_model.si(request.model_dump(mode="json")).set(queue=placement[request.model],
                                                          task_id=routed.task_ids[request.model])
        for request in requests
    ]
    body = assemble.s(routed.model_dump(mode="json"))
    if settings.nemotron.enabled:
        body = body | assess_event_risk.s()
    return routed, chord(header, body)


@app.task(name="enrich_detection", bind=True)
def enrich_detection(self, event: Any) -> dict:
    """Entry point for the backend: one detection event dict in, its EnrichmentResult out.

    One result per event_id: a stored result is returned as is, and a duplicate of an event still in
    flight waits for the original's result instead of computing it again.
    """
    received_at = time.time()
    settings = get_settings()
    try:
        detection = parse_event(event)
    except Rejected as exc:
        return reject(event, exc.errors, self.request.id)
    existing = result_store().get(detection.event_id)
    if existing is not None and existing.get("status") != "rejected":
        log.info("event %s already enriched; returning the stored result", detection.event_id)
        return existing
    ledger = Ledger(redis_client())
    if not ledger.claim(detection.event_id, settings.event_deadline_seconds * 2):
        log.info("event %s is already in flight; waiting for its result", detection.event_id)
        return self.replace(await_result.si(detection.event_id, time.time() + settings.event_deadline_seconds * 2))
    try:
        admitted = admit(detection, settings, read_key=redis_client().get)
    except Rejected as exc:
        ledger.release(detection.event_id)
        return reject(event, exc.errors, self.request.id)
    routed, work = dispatch(admitted, settings, received_at)
    if work is None:
        ledger.release(detection.event_id)
        return finish_event([], routed)
    ledger.open(routed, settings.event_deadline_seconds, settings.result_ttl_seconds)
    return self.replace(work)


@app.task(name="await_result", bind=True, max_retries=None)
def await_result(self, event_id: str, deadline: float) -> dict:
    """A duplicate submission's answer: the original's stored result, polled without blocking a worker."""
    stored = result_store().get(event_id)
    if stored is not None:
        return stored
    if time.time() > deadline:
        return EnrichmentResult(
            event_id=event_id, status="partial", errors={"event_id": "a duplicate of this event never finished"}
        ).model_dump(mode="json")
    raise self.retry(countdown=0.5)
