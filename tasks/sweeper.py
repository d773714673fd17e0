"""sweep_stalled_events: events whose chord never assembled are finished as partial, never left hanging."""

from __future__ import annotations

import logging

from celery.result import AsyncResult

from tasks.assemble import finish_event
from tasks.celery import app
from tasks.connection import redis_client, result_store
from tasks.ledger import Ledger
from tasks.schemas import RoutedEvent

log = logging.getLogger(__name__)

SWEEP_NOTE = "no record before the event deadline (finished by the sweeper)"


def finished_records(routed: RoutedEvent) -> list[dict]:
    """Records of the header tasks that did finish, read back from the result backend."""
    records = []
    for model, task_id in routed.task_ids.items():
        result = AsyncResult(task_id, app=app)
        if result.successful() and isinstance(result.result, dict):
            records.append(result.result)
        else:
            state = result.state
            records.append({"model": model, "status": "error", "error": f"{SWEEP_NOTE}; task state {state}"})
    return records


@app.task(name="sweep_stalled_events")
def sweep_stalled_events(limit: int = 100) -> dict:
    """Finish every overdue event in the ledger; returns how many were finished and how many were closed."""
    ledger = Ledger(redis_client())
    finished, closed = [], []
    for event_id in ledger.overdue(limit=limit):
        routed = ledger.routed(event_id)
        if routed is None or result_store().get(event_id) is not None:
            ledger.close(event_id)
            closed.append(event_id)
            continue
        log.warning("event %s missed its deadline; finishing it as partial", event_id)
        finish_event(finished_records(routed), routed)
        finished.append(event_id)
    return {"finished": finished, "closed": closed}
