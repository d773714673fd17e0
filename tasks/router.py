"""enrich_detection: admit the event, store its frames once, plan and place models, hand over to a chord.

One result per event_id, and a stored result is never replaced: the event's own pipeline stores it once
(results.ResultStore.save is SET NX). A submission the router rejects never takes the event's id: its rejection
is stored under rejected-<task id> (the rejection's event_id; `submitted_event_id` echoes the id it was given),
so a bad submission can neither overwrite an enrichment nor hold an id against the corrected event.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid as uuid_module
from dataclasses import dataclass
from typing import Any

from celery import chord, group
from kombu.utils.uuid import uuid

from tasks.admission import AdmittedEvent, Rejected, admit, parse_event, redis_key_reader, uploads_of
from tasks.assemble import answer_duplicates, assemble, finish_event, finish_unwritten
from tasks.celery import app
from tasks.celery_internals import send_chord
from tasks.connection import redis_client, result_store
from tasks.ledger import Ledger
from tasks.metrics import EVENTS
from tasks.model_task import model_tasks
from tasks.pipeline import frame_keys, plan, route, screen
from tasks.placement import place_models
from tasks.redis_retry import refusal, until_written
from tasks.results import result_key
from tasks.risk_task import assess_event_risk
from tasks.schemas import CAMERA_ID_PATTERN, REJECTION_PREFIX, EnrichmentResult, RoutedEvent, bounded_errors, echo
from workers.frames import FrameStore
from workers.registry import estimated_bytes
from workers.settings import Settings, get_settings
from workers.state import live_workers, queue_backlog

log = logging.getLogger(__name__)


TASK_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def rejection_id(task_id: str | None) -> str:
    """The id a rejection is stored under: rejected-<task id>, a fresh one when the sender's task id is odd."""
    safe = task_id if isinstance(task_id, str) and TASK_ID_PATTERN.fullmatch(task_id) else uuid()
    return f"{REJECTION_PREFIX}{safe}"


def rejection(event: Any, errors: dict[str, str], task_id: str | None) -> EnrichmentResult:
    """The 'rejected' result naming the bad field(s); nothing from the input in it unchecked or unbounded."""
    given = event.get("event_id") if isinstance(event, dict) else None
    camera = event.get("camera_id") if isinstance(event, dict) else None
    return EnrichmentResult(
        event_id=rejection_id(task_id), status="rejected", errors=bounded_errors(errors),
        submitted_event_id=echo(given) if given is not None else None,
        camera_id=camera if isinstance(camera, str) and re.fullmatch(CAMERA_ID_PATTERN, camera) else None,
    )


def reject(event: Any, errors: dict[str, str], task_id: str | None) -> dict:
    """Store (under its own rejected-<task id>, never the event's id), announce and return a rejection."""
    result = rejection(event, errors, task_id)
    log.info("rejected event %s (given id %r): %s", result.event_id, result.submitted_event_id, result.errors)
    EVENTS.labels("rejected").inc()
    if uploads := uploads_of(event):  # frames the client handed over for an event that will not use them
        redis_client().delete(*uploads)
    return result_store().save(result)


def event_argument(args: tuple, kwargs: dict) -> Any:
    """The one event of an enrich_detection call; any other call shape is the sender's input error."""
    if len(args) == 1 and not kwargs:
        return args[0]
    if not args and set(kwargs) == {"event"}:
        return kwargs["event"]
    raise Rejected({"event": f"enrich_detection takes one argument, the event dict "
                             f"(got {len(args)} positional, keywords {echo(sorted(kwargs))})"})


def forget_arguments(request: Any, event: Any) -> None:
    """Keep the event out of Celery's stored task result (result_extended stores the call's arguments): a short
    summary stands in, so no frame stays in celery-task-meta-* for TASK_RESULT_TTL_SECONDS."""
    given = event.get("event_id") if isinstance(event, dict) else None
    request.args = [{"event_id": echo(given) if given is not None else None, "not_kept": "the event itself"}]
    request.kwargs = {}


CHORD_IDS = uuid_module.UUID("5f1c1f2e-8a8b-4f55-9d0c-6a0f2b8e7a31")  # namespace of the ids derived below


def chord_ids(submission: str, event_id: str, models: list[str]) -> tuple[str, dict[str, str]]:
    """The chord's group id and one task id per model, derived from the submission (the router's task id) and the
    event id: a redelivered submission (its router died after sending, or Redis restarted) sends the same chord
    again, and Celery's chord join counts each header task once, so the event is assembled once."""
    def derived(name: str) -> str:
        return str(uuid_module.uuid5(CHORD_IDS, f"{submission}/{event_id}/{name}"))

    return derived("group"), {model: derived(model) for model in models}


def dispatch(admitted: AdmittedEvent, settings: Settings, received_at: float,
             submission: str | None = None) -> tuple[RoutedEvent, EventWork | None]:
    """Plan and place the models; the routed event and its work (None: no model, and no frame to store)."""
    keys = frame_keys(admitted)
    models = plan(admitted, settings)
    workers = live_workers(redis_client(), max_age_seconds=settings.worker_state_max_age_seconds)
    backlog = queue_backlog(redis_client(), [w.queue for w in workers])
    placement = place_models(models, workers, settings.device_queues, estimated_bytes(), settings.affinity_routing,
                             backlog)
    group_id, task_ids = chord_ids(submission or uuid(), admitted.event.event_id, models)
    routed, requests = route(admitted, keys, models, placement, task_ids, received_at, group_id=group_id,
                             screening=screen(admitted, settings))
    if not models:
        return routed, None
    header = model_tasks(requests, placement, routed.task_ids)
    body = assemble.s(routed.event.event_id, routed.group_id).set(argsrepr=f"(records of {routed.event.event_id})")
    if settings.nemotron.enabled:
        body = body | assess_event_risk.s()
    return routed, EventWork(header, body, routed.group_id, keys.to_write)


@dataclass(frozen=True)
class EventWork:
    """An event's chord: one run_model per planned model, then assembly (and the risk call) with their records;
    and the frames its model tasks will read, stored before the chord is sent."""

    header: list[Any]
    body: Any
    group_id: str
    frames: dict[str, bytes]

    def as_chord(self) -> Any:
        work = chord(self.header, self.body)
        work.tasks = group(self.header).set(task_id=self.group_id)  # chord() drops a group's id; the sweeper needs it
        return work


def in_canvas(request: Any) -> bool:
    """Whether this task runs as part of a chain, chord, group or callback (its result feeds something else)."""
    return bool(request.chain or request.chord or request.group or request.callbacks or request.errbacks)


def hand_over_event(task: Any, work: EventWork) -> None:
    """Let the event's chord finish in this task's place: its body's result is stored under this task's id.

    What Task.replace does, without its cost: replace ends the task by raising Ignore, and Celery records that
    exception with a full, picklable traceback (a quarter of the router's CPU per event in scripts/bench.py's
    profile). When this task is not itself part of a chain, chord, group or callback, the chord is sent with its
    body frozen under this task's id; enrich_detection stores no result of its own (ignore_result), so
    `AsyncResult(id).get()` waits for the body's result. Otherwise Task.replace runs.
    """
    request = task.request
    if in_canvas(request):
        task.replace(work.as_chord())
    send_chord(task.app, work.header, work.body, group_id=work.group_id, body_id=request.id,
               root_id=request.root_id or request.id, parent_id=request.id)


def answer(task: Any, result: dict) -> dict:
    """Store the router's own answer (a rejection, or the stored result) under this task's id."""
    task.backend.store_result(task.request.id, result, "SUCCESS", request=task.request)
    return result


@app.task(name="enrich_detection", bind=True, ignore_result=True)
def enrich_detection(self, *args: Any, **kwargs: Any) -> dict | None:
    """Entry point for the backend: one detection event dict in, its EnrichmentResult out.

    One result per event_id: a stored result is returned as is, and a duplicate of an event still in flight joins
    the event's waiters (costing nothing while it waits) and is answered when the original finishes. The result is
    stored under this task's id either way (by the router itself, by the chord's assemble that takes its place, or
    by whoever finishes the original). Messages the trusted transport refuses (oversized, shaped unlike an event,
    another task name, an ETA) never get here.
    """
    received_at = time.time()
    settings = get_settings()
    event = args[0] if len(args) == 1 else kwargs.get("event")
    forget_arguments(self.request, event)
    try:
        event = event_argument(args, kwargs)
        detection = parse_event(event)
    except Rejected as exc:
        errors = exc.errors
        return until_written("answer", lambda: answer(self, reject(event, errors, self.request.id)))
    ledger = Ledger(redis_client())
    submission = self.request.id or uuid()
    waits = not in_canvas(self.request)  # a chain or chord cannot wait for another submission's answer
    stored, claimed = until_written("claim", lambda: ledger.claim_or_wait(
        detection.event_id, result_key(detection.event_id), settings.event_deadline_seconds * 2,
        waiter=self.request.id if waits else None, wait_until=time.time() + settings.event_deadline_seconds * 2,
        owner=submission))
    if stored is not None:
        log.info("event %s already has a result; returning the stored one", detection.event_id)
        return until_written("answer", lambda: answer(self, json.loads(stored)))
    if not claimed:
        if not waits:
            return until_written("answer", lambda: answer(self, reject(event, {
                "event_id": "a submission of this id is in flight; a duplicate inside a chain or chord cannot wait "
                            "for it"}, self.request.id)))
        log.info("event %s is already in flight; this duplicate waits for its result", detection.event_id)
        return None
    # Every step below is run again while Redis refuses it (restarting, or full): the same keys and the same ids
    # each time, so nothing is written twice, and the message stays unacknowledged until the event is handed on.
    try:
        outcome, work = until_written("route", lambda: admit_and_dispatch(
            self, event, detection, settings, received_at, submission))
    except Exception:  # a fault of ours, not Redis': a corrected resend must not wait out this claim
        answer_ended_without_result(detection.event_id, ledger.release(detection.event_id))
        raise
    if work is None:  # the router's own answer: release the claim first, so a corrected resend is not kept waiting
        waiting = until_written("release", lambda: ledger.release(detection.event_id))
        answer_ended_without_result(detection.event_id, waiting)
        return until_written("answer", lambda: answer(self, outcome))
    routed, event_work = work
    step = "record"
    try:  # a full Redis is waited out a moment, not until it has room for the frames: the event is answered instead
        until_written(step, lambda: record(routed, event_work, ledger, settings), full_for=ROOM_WAIT_SECONDS)
        step = "send"
        until_written(step, lambda: hand_over_event(self, event_work), full_for=ROOM_WAIT_SECONDS)
    except Exception as exc:
        if refusal(exc) != "full":
            raise
        payload = finish_unwritten(routed, step, exc)
        return until_written("answer", lambda: answer(self, payload))
    return None


# How long the router waits for a full Redis (OOM at maxmemory) to take an event's frames and ledger entry, or its
# model tasks, before it answers the event partial with the reason: room comes back only as events finish, and
# waiting longer holds a router process the assemblies that free it need (the stall issue 28 measured).
ROOM_WAIT_SECONDS = 2.0


def answer_ended_without_result(event_id: str, waiters: list[str]) -> None:
    """Duplicates that waited for a submission that ended without a result (it was rejected: rejections never take
    the id) are told so at once, each with a rejection of its own."""
    if not waiters:
        return
    stored = result_store().get(event_id)  # answered by a finish in between (the no-model path stores one)
    for task_id in waiters:
        if stored is not None:
            answer_duplicates([task_id], stored)
            continue
        rejected = reject({"event_id": event_id}, {"event_id": "a submission of this id was in flight and ended "
                                                                "without a result (it was rejected); send the event "
                                                                "again"}, task_id)
        answer_duplicates([task_id], rejected)


def record(routed: RoutedEvent, work: EventWork, ledger: Ledger, settings: Settings) -> None:
    """Store the event's frames and open its ledger entry in one round trip, before any model task is sent."""
    with redis_client().pipeline(transaction=True) as pipe:
        FrameStore(redis_client(), settings.frame_ttl_seconds).put_many(work.frames, pipe)
        ledger.open(routed, settings.event_deadline_seconds, settings.result_ttl_seconds, pipe)
        pipe.execute()


def admit_and_dispatch(task: Any, event: Any, detection: Any, settings: Settings, received_at: float,
                       submission: str | None = None) -> tuple[dict | None, tuple[RoutedEvent, EventWork] | None]:
    """(the router's own answer, None), or (None, (routed event, its chord)) for an event models will enrich."""
    try:
        admitted = admit(detection, settings, read_key=redis_key_reader(redis_client(), settings.max_image_bytes))
    except Rejected as exc:
        return reject(event, exc.errors, task.request.id), None
    routed, work = dispatch(admitted, settings, received_at, submission)
    if work is None:
        return finish_event([], routed), None
    return None, (routed, work)
