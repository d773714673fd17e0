"""Model tasks that exist nowhere any more are sent again, so their event completes instead of ending partial.

kombu's Redis transport takes a message with BRPOP and only then records it as unacknowledged: a device worker
killed between the two (a host lost mid-burst), or a Redis killed after it served a BRPOP whose reply never reached
the worker, leaves a model task that is neither waiting in a queue, nor taken, nor joined to its chord. Its event
waited for the sweeper and ended partial at EVENT_DEADLINE_SECONDS (issue 28, the last hangs of the host and Redis
cases). The sweeper (beat) looks, for the events routed at least LOST_AFTER_SECONDS ago, for model tasks whose
record has not joined and whose message is in no queue and no worker's unacked record, and sends each again: the
same task id, chord and index, rebuilt from the ledger entry and the claim (the chord's body id is the router's task
id, the claim's owner), on its queue or a live one. When the chord's join is done but its callback, the assembly,
is found nowhere (a BRPOP of the assemble queue whose reply a Redis shutdown cut off), the records went with it:
the chord's join is reset and every model task sent again. A task that was only slow to show (in a worker's hands between
its BRPOP and its record) runs twice and is counted once by the chord's join (Celery keys it on task id and index).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis

from tasks.celery import app
from tasks.celery_internals.taking import taking_key
from tasks.celery_internals.unacked import UNACKED_KEY
from tasks.connection import redis_client
from tasks.ledger import DEADLINES_KEY, Ledger, claim_key
from tasks.metrics import TAKEN_RESTORED
from tasks.model_task import run_model
from tasks.pipeline import model_request
from tasks.placement import choose_queue
from tasks.results import result_key
from tasks.schemas import RoutedEvent
from workers.settings import Settings
from workers.state import device_queues, live_workers, queue_backlog

log = logging.getLogger(__name__)

LOST_AFTER_SECONDS = 30.0  # routed this long ago: every task of it has long been waiting, taken, or joined


def chord_done(group_id: str) -> bool:
    """Whether the chord's join has completed (its callback claimed or sent): nothing of it is lost."""
    return bool(redis_client().exists(app.backend.get_key_for_group(group_id, ".c")))


def joined_records(group_id: str) -> dict[str, dict]:
    """Records the chord's join already holds (task id -> record): what finished before the chord broke.

    Model tasks do not store their results as celery-task-meta (ignore_result); each one's record goes into
    the Redis backend's join of its chord (<group key>.j, a sorted set or a list of [1, task_id, state,
    result]), which is where the callback would have read them.
    """
    backend = app.backend
    if not group_id or not hasattr(backend, "get_key_for_group"):
        return {}
    key = backend.get_key_for_group(group_id, ".j")
    client = backend.client
    raw = client.zrange(key, 0, -1) if client.type(key) in (b"zset", "zset") else client.lrange(key, 0, -1)
    joined = {}
    for item in raw:
        try:
            _, task_id, state, result = backend.decode(item)
        except (ValueError, TypeError):
            continue
        if state == "SUCCESS" and isinstance(result, dict):
            joined[task_id] = result
    return joined


def joined_task_ids(group_id: str) -> set[str]:
    return set(joined_records(group_id))


def messages_blob(client: redis.Redis, queues: set[str]) -> bytes:
    """Every waiting and taken task message (in its queue, its taking list, or kombu's unacked record), as one
    byte string to look task ids up in."""
    with client.pipeline(transaction=False) as pipe:
        for queue in sorted(queues):
            pipe.lrange(queue, 0, -1)
            pipe.lrange(taking_key(queue), 0, -1)
        pipe.hvals(UNACKED_KEY)
        answers = pipe.execute()
    return b"\n".join(raw for answer in answers for raw in answer)


ROUTER_QUEUES = ("router", "assemble", "celery")  # where a chord's callback (assemble) waits


def lost_tasks(ledger: Ledger, settings: Settings, limit: int = 100) -> list[tuple[RoutedEvent, str | None, str]]:
    """(routed event, model, submission) for each first-round model task found nowhere: not joined, not waiting,
    not taken, its chord not done, in events routed at least LOST_AFTER_SECONDS ago and not yet overdue; and, with
    model None, each event whose chord is done but whose callback (the assembly, under the submission's id) is found
    nowhere either: its records went with that message, so the whole chord runs again."""
    client = redis_client()
    now = time.time()
    cutoff = now + settings.event_deadline_seconds - LOST_AFTER_SECONDS
    candidates = [m.decode() for m in client.zrangebyscore(DEADLINES_KEY, now, cutoff, start=0, num=limit)]
    unjoined: list[tuple[RoutedEvent, str | None, str]] = []
    for event_id in candidates:
        routed = ledger.routed(event_id)
        submission = client.get(claim_key(event_id))
        if routed is None or not routed.group_id or routed.stage != 1 or submission is None:
            continue
        if client.exists(result_key(event_id)):
            continue
        if chord_done(routed.group_id):
            unjoined.append((routed, None, submission.decode()))
            continue
        joined = joined_task_ids(routed.group_id)
        unjoined += [(routed, model, submission.decode()) for model, task_id in routed.task_ids.items()
                     if task_id not in joined]
    if not unjoined:
        return []
    queues = set(settings.device_queues) | device_queues(client) | set(ROUTER_QUEUES) | {
        queue for r, _, _ in unjoined for queue in r.placement.values()}
    blob = messages_blob(client, queues)
    return [(routed, model, submission) for routed, model, submission in unjoined
            if (routed.task_ids[model] if model else submission).encode() not in blob]


def resend(routed: RoutedEvent, model: str, submission: str, queue: str, settings: Settings) -> None:
    """Send one model task of `routed` again, as the router sent it: same id, chord, index and body."""
    from tasks.assemble import assemble
    from tasks.risk_task import assess_event_risk

    body: Any = assemble.s(routed.event.event_id, routed.group_id).set(
        argsrepr=f"(records of {routed.event.event_id})")
    if settings.nemotron.enabled:
        body = body | assess_event_risk.s()
    body.freeze(submission, root_id=submission)
    request = model_request(routed, model).model_dump(mode="json")
    run_model.apply_async(
        (request,), task_id=routed.task_ids[model], queue=queue, chord=body, group_id=routed.group_id,
        group_index=list(routed.task_ids).index(model), root_id=submission, parent_id=submission,
        argsrepr=f"({model} for {routed.event.event_id})", kwargsrepr="{}",
    )


def resend_lost_tasks(ledger: Ledger, settings: Settings, limit: int = 100) -> list[str]:
    """Send again every model task found nowhere (see the module); the task ids sent."""
    lost = lost_tasks(ledger, settings, limit)
    if not lost:
        return []
    client = redis_client()
    live = live_workers(client, settings.worker_state_max_age_seconds)
    if not live:
        return []
    live_queues = {worker.queue for worker in live}
    backlog = queue_backlog(client, sorted(live_queues))
    sent: dict[str, int] = {}
    resent = []
    expanded: list[tuple[RoutedEvent, str, str]] = []
    for routed, model, submission in lost:
        if model is not None:
            expanded.append((routed, model, submission))
            continue
        log.warning("event %s: its chord joined but its assembly (%s) is in no queue and taken by no worker: running "
                    "the chord again", routed.event.event_id, submission)
        client.delete(app.backend.get_key_for_group(routed.group_id, ".c"))  # the done marker: the join counts again
        app.backend.set_chord_size(routed.group_id, len(routed.task_ids))
        expanded += [(routed, name, submission) for name in routed.task_ids]
    for routed, model, submission in expanded:
        queue = routed.placement.get(model)
        if queue not in live_queues:
            queue = choose_queue(model, live, [], reserved=sent, backlog=backlog, affinity=True)
        sent[queue] = sent.get(queue, 0) + 1
        resend(routed, model, submission, queue, settings)
        resent.append(routed.task_ids[model])
        TAKEN_RESTORED.labels(queue, "lost").inc()
        log.warning("event %s: model task %s (%s) was in no queue, taken by no worker and not joined: sent again "
                    "to %s", routed.event.event_id, routed.task_ids[model], model, queue)
    return resent
