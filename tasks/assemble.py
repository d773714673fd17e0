"""assemble: the chord callback that turns one event's model records into the stored, prompt-ready result."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from celery import chord, group
from kombu.utils.uuid import uuid

from tasks.celery import app
from tasks.connection import redis_client, result_store
from tasks.household import Household
from tasks.ledger import Ledger, waiters_in
from tasks.metrics import ASSEMBLY_SECONDS, EVENTS, EVENTS_REFUSED_FULL
from tasks.model_task import model_tasks
from tasks.pipeline import ask_followups, assemble_result, second_round
from tasks.placement import place_models
from tasks.redis_retry import refusal, until_written
from tasks.reid_gallery import ReidGallery
from tasks.scene_baseline import SceneBaseline
from tasks.scene_context import PictureBaseline
from tasks.schemas import EnrichmentResult, FollowUp, RoutedEvent
from workers.frames import FrameStore
from workers.records import ModelRequest
from workers.registry import estimated_bytes
from workers.settings import get_settings
from workers.state import live_workers

log = logging.getLogger(__name__)


def finish_event(records: Iterable[Mapping[str, Any] | None], routed: RoutedEvent) -> dict:
    """Build, store and announce the EnrichmentResult of one routed event; delete its frames; close its ledger;
    answer the duplicates waiting for it. An event that already has a result is left as it is (that result is
    returned); an assembly that raises still finishes the event, as partial with the reason (no prompt), but for a
    Redis that is restarting (raised: the caller runs the assembly again) or full (its frames deleted to make room,
    and one more try)."""
    stored = result_store().get(routed.event.event_id)
    if stored is not None:
        return stored
    settings = get_settings()
    planned = set(routed.planned)  # a record for a model the router did not plan is not this event's
    records = [r for r in records if isinstance(r, Mapping) and r.get("model") in planned]

    def build() -> EnrichmentResult:
        return assemble_result(
            records, routed, ReidGallery.configured(redis_client(), settings.reid),
            baseline=SceneBaseline.configured(redis_client(), settings.scene), depth=settings.depth,
            cameras=settings.cameras, pictures=PictureBaseline(redis_client(), settings.cameras),
            household=Household(redis_client()), face_retention_seconds=settings.unknown_face_retention_seconds,
        )

    try:
        result = build()
    except Exception as exc:  # one event that cannot be assembled must not stay open (nor stop the sweeper)
        if refusal(exc) == "unreachable":
            raise  # Redis restarting, not the event: the caller runs the assembly again
        if refusal(exc) != "full":
            result = unassembled(routed, exc, logged=True)
        else:  # a gallery's or a baseline's write on a full Redis: room made with the event's frames, one more try
            FrameStore(redis_client(), settings.frame_ttl_seconds).delete(routed.owned_keys)
            try:
                result = build()
            except Exception as again:
                if refusal(again) == "unreachable":
                    raise
                result = unassembled(routed, again, logged=True)
    payload = store_final(result, routed, "assemble")
    ASSEMBLY_SECONDS.observe(time.time() - routed.routed_at)
    return payload


def store_final(result: EnrichmentResult, routed: RoutedEvent, step: str) -> dict:
    """Store the event's result once, delete its frames, close its ledger entry and answer its waiting duplicates,
    in one round trip, run again while Redis refuses it. On a full Redis the frames (read by every model by now, or
    never to be read) are deleted first, on their own: deletions are what Redis takes over maxmemory, and they make
    the room the result needs (a transaction holding a write is refused whole)."""
    settings = get_settings()
    ledger = Ledger(redis_client())
    frames = FrameStore(redis_client(), settings.frame_ttl_seconds)

    def store() -> tuple[dict, list[str]]:
        try:
            with redis_client().pipeline(transaction=True) as pipe:
                saved = result_store().save_in(pipe, result)
                frames.delete(routed.owned_keys, pipe)
                ledger.close(result.event_id, pipe)
                at = ledger.take_waiters(result.event_id, pipe)
                answers = pipe.execute()
                return saved(answers[0]), waiters_in(answers, at)
        except Exception as exc:
            if refusal(exc) == "full":
                frames.delete(routed.owned_keys)
            raise

    payload, waiters = until_written(step, store)
    answer_duplicates(waiters, payload)
    EVENTS.labels(result.status).inc()
    return payload


def finish_unwritten(routed: RoutedEvent, step: str, exc: BaseException) -> dict:
    """The router's answer for an event Redis was too full to take (its frames and ledger entry, or its model
    tasks, refused with OOM at maxmemory): partial, no model run, the reason in `errors.storage`; whatever of it was
    written is deleted. Stored once like any result, so the backend hears at once instead of the pool stalling."""
    event = routed.event
    result = EnrichmentResult(
        event_id=event.event_id, status="partial", camera_id=event.camera_id, detection_type=event.detection_type,
        errors={"storage": f"Redis was full (maxmemory) when the event's {STORAGE_STEPS.get(step, step)} were to be "
                           f"written ({str(exc)[:120]}); no model ran: send the event again once Redis has room"},
    )
    log.warning("event %s: Redis is full, its %s were refused; answered partial without models", event.event_id,
                STORAGE_STEPS.get(step, step))
    EVENTS_REFUSED_FULL.labels(step).inc()
    return store_final(result, routed, "answer_full")


STORAGE_STEPS = {"record": "frames and ledger entry", "send": "model tasks"}


def send_followups(task: Any, routed: RoutedEvent, records: list[dict], requests: list[ModelRequest],
                   asked: dict[str, FollowUp]) -> dict:
    """The second round: the follow-up models on their queues, then this assembly again with every record.

    The first round's records wait in the ledger entry; this task is replaced by the second chord (Celery's
    Task.replace), so the caller waiting on the event's result gets the final assembly, not this one.
    """
    settings = get_settings()
    models = [request.model for request in requests]
    workers = live_workers(redis_client(), max_age_seconds=settings.heartbeat_seconds * 3)
    placement = place_models(models, workers, settings.device_queues, estimated_bytes(), settings.affinity_routing)
    task_ids = {model: uuid() for model in models}
    updated = second_round(routed, records, requests, placement, task_ids, asked, group_id=uuid())
    if not Ledger(redis_client()).update(updated):  # the sweeper finished it meanwhile
        return result_store().get(routed.event.event_id) or {}
    header = model_tasks(requests, placement, task_ids)
    body = assemble.s(routed.event.event_id, updated.group_id).set(argsrepr=f"(records of {routed.event.event_id})")
    work = chord(header, body)
    work.tasks = group(header).set(task_id=updated.group_id)  # chord() drops a group's id; the sweeper needs it
    log.info("event %s: second round %s, asked for by the first models' evidence", routed.event.event_id, models)
    raise task.replace(work)


def unassembled(routed: RoutedEvent, exc: Exception, logged: bool = False) -> EnrichmentResult:
    """The partial result of an event whose records could not be assembled: its facts, the reason, no prompt."""
    event = routed.event
    if logged:
        log.error("event %s could not be assembled; finishing it as partial", event.event_id, exc_info=exc)
    return EnrichmentResult(
        event_id=event.event_id, status="partial", camera_id=event.camera_id, detection_type=event.detection_type,
        errors={"assembly": f"the event could not be assembled ({type(exc).__name__}: {str(exc)[:200]})"},
    )


def answer_duplicates(task_ids: Iterable[str], result: dict) -> None:
    """Store `result` as the Celery task result of each duplicate submission that waited for this event."""
    for task_id in task_ids:
        try:
            app.backend.store_result(task_id, result, "SUCCESS")
        except Exception:
            log.exception("could not answer duplicate submission %s", task_id)


@app.task(name="assemble", bind=True)
def assemble(self: Any, records: list[dict], event: str, chord_group: str | None = None) -> dict:
    """Chord callback: records from every model task of one event, the event's id and its chord's group id.

    What the event is, which keys it owns, its deadline and the models planned are read from the ledger entry the
    router wrote before any model task was sent, never from this message: the chord carries only the id and the
    group id the router chose (which only the pool ever sees), and an assemble whose group id is not the ledger's
    changes nothing. So does one for an event with no ledger entry, or one that already has a result. When the
    first round's evidence asks for follow-up models, they run in a second round (with a group id of its own) and
    this assembly runs again with all the records. Celery's stored task result names the records instead of
    repeating them (result_extended stores a call's arguments; the result's `models` holds them already).
    """
    self.request.args = [f"({len(records) if isinstance(records, list) else '?'} model records)", event, chord_group]
    if not isinstance(event, str):
        log.warning("assemble refused: its event argument is a %s, not an event id", type(event).__name__)
        return {"error": "assemble takes an event id; the event itself is read from the ledger"}
    # Run again with backoff while Redis refuses a read or a write (restarting, or full): an assembly that raised
    # was acknowledged all the same, and its event waited for the sweeper (issue 28). Storing is SET NX: once.
    return until_written("assemble", lambda: assemble_event(self, records, event, chord_group))


def assemble_event(self: Any, records: list[dict], event: str, chord_group: str | None) -> dict:
    """One try of the assembly of `event` (see assemble)."""
    routed = Ledger(redis_client()).routed(event)
    if routed is None or routed.group_id != chord_group:
        # the sweeper finished the event first (and closed its entry), the entry expired, or this is not its chord
        if routed is not None:
            log.warning("assemble for %s refused: not the chord the router sent for it", event)
        stored = result_store().get(event)
        if stored is not None:
            return stored
        return EnrichmentResult(event_id=event, status="partial", errors={
            "event_id": "the event's routing record was gone when its models finished"}).model_dump(mode="json")
    if routed.followups:
        requests, asked = ask_followups(routed, records)
        if requests:
            return send_followups(self, routed, records, requests, asked)
        if asked:  # asked for, but lacking what they need: noted in the result, nothing more to run
            routed = second_round(routed, records, [], {}, {}, asked)
            records = []
    return finish_event(records, routed)
