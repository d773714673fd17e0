"""sweep_stalled_events: events whose chord never assembled are finished as partial, never left hanging; duplicates
that waited past their deadline for an original that never finished are answered.

One event that cannot be finished never blocks the others: each is finished on its own (finish_event stores a
partial result even when assembly raises), and an entry that cannot even be read is closed and counted.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.result import AsyncResult

from tasks.assemble import answer_duplicates, finish_event
from tasks.celery import app
from tasks.connection import redis_client, result_store
from tasks.ledger import DEADLINES_KEY, Ledger, waiters_in
from tasks.redis_retry import refusal
from tasks.resend import joined_records, resend_lost_tasks
from tasks.schemas import EnrichmentResult, RoutedEvent
from workers.settings import get_settings

log = logging.getLogger(__name__)

SWEEP_NOTE = "no record before the event deadline (finished by the sweeper)"


def finished_records(routed: RoutedEvent) -> list[dict]:
    """Records of the header tasks that did finish (from the chord's join, else the task's stored result), after
    a second round's first records (kept in the ledger entry)."""
    joined = joined_records(routed.group_id)
    records = list(routed.earlier_records)
    earlier = {record.get("model") for record in records}
    for model, task_id in routed.task_ids.items():
        if model in earlier:
            continue
        if task_id in joined:
            records.append(joined[task_id])
            continue
        result = AsyncResult(task_id, app=app)
        if result.successful() and isinstance(result.result, dict):
            records.append(result.result)
        else:
            records.append({"model": model, "status": "error", "error": f"{SWEEP_NOTE}; task state {result.state}"})
    return records


SWEEP_LOCK = "sweeper:lock"


@app.task(name="sweep_stalled_events")
def sweep_stalled_events(limit: int = 100) -> dict:
    """Finish every overdue event in the ledger, each on its own; answer duplicates that waited too long; assemble
    events whose records all joined but whose callback was lost; send again model tasks found nowhere
    (tasks/resend.py).

    Returns the events finished, those closed (already finished, or gone), those that failed (closed all the same,
    named in the log), the events whose waiting duplicates were answered, and those assembled. One sweep per
    interval whatever the number of beats: a sweep takes a lock for most of the interval first.
    """
    settings = get_settings()
    if not redis_client().set(SWEEP_LOCK, "1", nx=True, ex=max(1, int(settings.sweep_interval_seconds * 0.9))):
        return {"finished": [], "closed": [], "skipped": "another sweep ran this interval"}
    ledger = Ledger(redis_client())
    outcome: dict[str, list[str]] = {"finished": [], "closed": [], "failed": [], "waiters_answered": []}
    for event_id in ledger.overdue(limit=limit):
        try:
            outcome[sweep_one(ledger, event_id)].append(event_id)
        except Exception as exc:
            if refusal(exc) is not None:  # Redis, not the event: the entry stays for the next sweep
                log.warning("Redis refused sweeping %s (%s): left for the next sweep", event_id, str(exc)[:200])
                outcome.setdefault("left", []).append(event_id)
                break
            log.exception("event %s could not be swept; closing its ledger entry", event_id)
            outcome["failed"].append(event_id)
            close_quietly(ledger, event_id)
    for event_id in ledger.waiting_overdue(limit=limit):
        try:
            answer_waiting(ledger, event_id)
            outcome["waiters_answered"].append(event_id)
        except Exception:
            log.exception("the duplicates waiting for %s could not be answered", event_id)
    outcome["assembled"] = assemble_joined(ledger, settings, limit)
    try:
        outcome["resent"] = resend_lost_tasks(ledger, settings, limit)
    except Exception as exc:  # the next sweep looks again
        log.warning("could not look for lost model tasks (%s): again next sweep", str(exc)[:200])
    return outcome


def sweep_one(ledger: Ledger, event_id: str) -> str:
    """Finish one overdue event ("finished"), or close an entry with nothing left to finish ("closed")."""
    routed = ledger.routed(event_id)
    if routed is None or result_store().get(event_id) is not None:
        ledger.close(event_id)
        return "closed"
    log.warning("event %s missed its deadline; finishing it as partial", event_id)
    finish_event(finished_records(routed), routed)
    return "finished"


def close_quietly(ledger: Ledger, event_id: str) -> None:
    try:
        ledger.close(event_id)
    except Exception:
        log.exception("could not close the ledger entry of %s", event_id)


def answer_waiting(ledger: Ledger, event_id: str) -> None:
    """Duplicates whose original never finished in time: the stored result if there is one now, else a partial."""
    with redis_client().pipeline(transaction=True) as pipe:
        at = ledger.take_waiters(event_id, pipe)
        waiters = waiters_in(pipe.execute(), at)
    stored = result_store().get(event_id)
    answer = stored if stored is not None else EnrichmentResult(
        event_id=event_id, status="partial", errors={"event_id": "a duplicate of this event never finished"}
    ).model_dump(mode="json")
    answer_duplicates(waiters, answer)


JOINED_GRACE_SECONDS = 10.0  # a chord whose parts have all joined this long ago has lost its callback


def assemble_joined(ledger: Ledger, settings: Any, limit: int) -> list[str]:
    """Assemble now the events whose model records have all joined their chord but whose callback never ran (it
    was being sent when Redis went down): complete, at the next sweep, not partial at their deadline. (A second
    round's evidence is not asked again here: such an event is finished with the records it has.)"""
    now = time.time()
    cutoff = now + settings.event_deadline_seconds - JOINED_GRACE_SECONDS  # routed at least the grace ago
    client = redis_client()
    candidates = [m.decode() for m in client.zrangebyscore(DEADLINES_KEY, now, cutoff, start=0, num=limit)]
    assembled = []
    for event_id in candidates:
        routed = ledger.routed(event_id)
        if routed is None or not routed.group_id or result_store().get(event_id) is not None:
            continue
        earlier = {record.get("model") for record in routed.earlier_records}
        expected = {task_id for model, task_id in routed.task_ids.items() if model not in earlier}
        if not expected <= set(joined_records(routed.group_id)):
            continue
        log.warning("event %s: every model record joined but its assembly never ran; assembling it now", event_id)
        finish_event(finished_records(routed), routed)
        assembled.append(event_id)
    return assembled
