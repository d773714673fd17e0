"""The pool's shortcuts through Celery and kombu internals, behind one check of the versions they were written for.

Each module here leans on code Celery and kombu do not document as API: the chord protocol sent directly
(`chords`), one Redis client per kombu channel (`redis_clients`), task events flushed in batches (`event_flush`),
and the trust boundary in kombu's Redis channel (`trusted_transport`: messages signed when sent, screened by
`message_bounds` before they are decoded, and taken in one step Redis does whole: `taking`), messages kept when
Redis refuses their unacked record (`deliveries`), a model task's chord join run again while Redis refuses it
(`chord_join`), and taken messages put back at once after a restart or a reconnect, or moved off a dead worker's
queue (`unacked`). They were written and tested against WRITTEN_FOR. On any other version, or with CELERY_SPEEDUPS=0,
the pool runs on Celery's stock path instead (the canvas's chord, kombu's own clients and transport, Celery's
consumer, kombu's own unacked handling) and says so once in the log: correct, somewhat slower, and without these:
messages are decoded before admission bounds them, internal messages are not signed (the Redis ACL users of README
"Security defaults" are what keeps a backend off the internal queues), a message is lost when its worker is killed
between kombu's BRPOP and its unacked record or when Redis refuses that record, so is a model record whose chord
join Redis refuses (its event ends partial at its deadline), and taken messages come back only after
VISIBILITY_TIMEOUT_SECONDS (a dead device worker's events end partial at their deadline).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache

import celery
import kombu

from workers.settings import get_settings

log = logging.getLogger(__name__)

WRITTEN_FOR = {"celery": "5.7.0", "kombu": "5.7.0"}
STOCK_CONSUMER = "celery.worker.consumer:Consumer"
BATCHING_CONSUMER = "tasks.celery_internals.event_flush:Consumer"
TRUSTED_TRANSPORT = "tasks.celery_internals.trusted_transport:Transport"


def version_mismatch(installed: dict[str, str] | None = None) -> str | None:
    """What differs from WRITTEN_FOR ("celery 5.8.0 (written for 5.7.0)"), or None when the versions match."""
    installed = installed if installed is not None else {"celery": celery.__version__, "kombu": kombu.__version__}
    differing = [f"{name} {installed.get(name)} (written for {version})"
                 for name, version in WRITTEN_FOR.items() if installed.get(name) != version]
    return ", ".join(differing) or None


@cache
def enabled() -> bool:
    """Whether the shortcuts are on: the versions match and CELERY_SPEEDUPS is not 0. Warns once when off by version."""
    if not get_settings().celery_speedups:
        log.info("Celery shortcuts off (CELERY_SPEEDUPS=0): the pool runs on Celery's stock path")
        return False
    mismatch = version_mismatch()
    if mismatch:
        log.warning("Celery shortcuts off: %s; the pool runs on Celery's stock path (correct, somewhat slower; "
                    "messages are decoded before they are bounded and internal ones are not signed)", mismatch)
        return False
    return True


def describe() -> str:
    """One line for the worker's log: which path this process runs."""
    if enabled():
        return f"Celery shortcuts on (celery {celery.__version__}, kombu {kombu.__version__})"
    return f"Celery shortcuts off: Celery's stock path (celery {celery.__version__}, kombu {kombu.__version__})"


def install() -> None:
    """Install the process-wide patches (kombu's channel clients, parked deliveries, retried chord joins) when the
    shortcuts are on."""
    if enabled():
        from tasks.celery_internals import chord_join, deliveries, redis_clients

        redis_clients.install()
        deliveries.install()
        chord_join.install()


def add_consumer_steps(app: celery.Celery, owned_queues: Callable[[], list[str]]) -> None:
    """Add the consumer step that puts a worker's taken messages back at start and after a reconnect (shortcuts on)."""
    if enabled():
        from tasks.celery_internals.unacked import consumer_step

        app.steps["consumer"].add(consumer_step(owned_queues))


def consumer_class() -> str:
    """The worker consumer celeryconfig names: task events flushed in batches, or Celery's own."""
    return BATCHING_CONSUMER if enabled() else STOCK_CONSUMER


def broker_transport(broker_url: str) -> str | None:
    """The transport celeryconfig names: kombu's Redis transport with the pool's screening and signing (for redis://
    and rediss:// brokers, where the shortcuts are on), else None (kombu's own, chosen by the URL)."""
    if enabled() and broker_url.split("://", 1)[0] in ("redis", "rediss"):
        return TRUSTED_TRANSPORT
    return None


def send_chord(app: celery.Celery, header: list[celery.Signature], body: celery.Signature, *, group_id: str,
               body_id: str, root_id: str, parent_id: str) -> None:
    """Publish a chord of single-task `header` whose `body` runs under `body_id`: Celery's chord protocol sent
    directly when the shortcuts are on, else the canvas's own chord with the same ids."""
    if enabled():
        from tasks.celery_internals.chords import send_chord as send_directly

        send_directly(app, header, body, group_id=group_id, body_id=body_id, root_id=root_id, parent_id=parent_id)
        return
    work = celery.chord(header, body)
    work.tasks = celery.group(header).set(task_id=group_id)  # chord() drops a group's id; the sweeper needs it
    work.apply_async(task_id=body_id, root_id=root_id, parent_id=parent_id)
