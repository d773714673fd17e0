"""enrich_detection: admit the event, store its frames once, plan and place models, hand over to a chord."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import chord, group
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
    routed, requests = route(admitted, keys, models, placement, {model: uuid() for model in models}, received_at,
                             group_id=uuid())
    if not models:
        return routed, None
    header = [
        run_model.si(request.model_dump(mode="json")).set(
            queue=placement[request.model], task_id=routed.task_ids[request.model],
            argsrepr=f"({request.model} for {request.event_id})", kwargsrepr="{}",  # not a repr of every argument
        )
        for request in requests
    ]
    body = assemble.s(routed.model_dump(mode="json")).set(argsrepr=f"(records of {routed.event.event_id})")
    if settings.nemotron.enabled:
        body = body | assess_event_risk.s()
    work = chord(header, body)
    work.tasks = group(header).set(task_id=routed.group_id)  # chord() drops a group's id; the sweeper needs it
    return routed, work


def hand_over(task: Any, work: Any) -> None:
    """Let `work` (the event's chord) finish in this task's place: its result is stored under this task's id.

    What Task.replace does, without its cost: replace ends the task by raising Ignore, and Celery records
    that exception with a full, picklable traceback (a quarter of the router's CPU per event in
    scripts/bench.py's profile). When this task is not itself part of a chain, chord, group or callback, the
    chord is frozen with this task's id and sent; enrich_detection stores no result of its own
    (ignore_result), so `AsyncResult(id).get()` waits for the assembled one. Otherwise Task.replace runs.
    """
    request = task.request
    if request.chain or request.chord or request.group or request.callbacks or request.errbacks:
        task.replace(work)
    work.freeze(request.id)
    work.set(root_id=request.root_id or request.id, parent_id=request.id)
    work.delay()


def answer(task: Any, result: dict) -> dict:
    """Store the router's own answer (a rejection, a stored or awaited result) under this task's id."""
    task.backend.store_result(task.request.id, result, "SUCCESS", request=task.request)
    return result


@app.task(name="enrich_detection", bind=True, ignore_result=True)
def enrich_detection(self, event: Any) -> dict | None:
    """Entry point for the backend: one detection event dict in, its EnrichmentResult out.

    One result per event_id: a stored result is returned as is, and a duplicate of an event still in
    flight waits for the original's result instead of computing it again. The result is stored under
    this task's id either way (by the router itself, or by the chord's assemble that takes its place).
    """
    received_at = time.time()
    settings = get_settings()
    try:
        detection = parse_event(event)
    except Rejected as exc:
        return answer(self, reject(event, exc.errors, self.request.id))
    existing = result_store().get(detection.event_id)
    if existing is not None and existing.get("status") != "rejected":
        log.info("event %s already enriched; returning the stored result", detection.event_id)
        return answer(self, existing)
    ledger = Ledger(redis_client())
    if not ledger.claim(detection.event_id, settings.event_deadline_seconds * 2):
        log.info("event %s is already in flight; waiting for its result", detection.event_id)
        hand_over(self, await_result.si(detection.event_id, time.time() + settings.event_deadline_seconds * 2))
        return None
    try:
        admitted = admit(detection, settings, read_key=redis_client().get)
    except Rejected as exc:
        ledger.release(detection.event_id)
        return answer(self, reject(event, exc.errors, self.request.id))
    routed, work = dispatch(admitted, settings, received_at)
    if work is None:
        ledger.release(detection.event_id)
        return answer(self, finish_event([], routed))
    ledger.open(routed, settings.event_deadline_seconds, settings.result_ttl_seconds)
    hand_over(self, work)
    return None


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
