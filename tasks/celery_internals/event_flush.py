"""The workers' consumer: Celery's own, publishing buffered task events at most every EVENT_FLUSH_SECONDS.

Celery buffers a worker's task events (received, started, succeeded) and publishes what is buffered on the next
turn of the event loop: with six to eight tasks per detection event that is a Redis PUBLISH for almost every
task event, the largest single cost in a device worker's CPU profile (scripts/bench.py, --noop: 16%). Waiting
EVENT_FLUSH_SECONDS for company sends them as one `task.multi` message per interval instead (Celery's own
grouped format; Flower and `celery events` read it as before), a tenth of a second later at most. Events still
buffered when the consumer stops are published then. celeryconfig names this class as `worker_consumer`.
"""

from __future__ import annotations

import threading
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer
from vine import promise

EVENT_FLUSH_SECONDS = 0.1


class Consumer(CeleryConsumer):
    """Celery's consumer with task events published in batches, at most EVENT_FLUSH_SECONDS after the first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prepare_events_flush()

    def _prepare_events_flush(self) -> None:
        self._events_flush_armed = False
        self._events_flush_lock = threading.Lock()
        self._arm_events_flush_promise = promise(self._arm_events_flush)

    def on_send_event_buffered(self) -> None:
        """After each buffered event: arm one flush unless one is armed already.

        May run on a pool thread (a threads pool sends task-started/succeeded from the task's thread): call_soon is
        the hub's thread-safe way in (it wakes the event loop through a pipe), so it is called once per flush, not
        once per event. The flag is cleared before a flush reads the buffer, so an event buffered after that
        clearing arms the next flush and none is left waiting.
        """
        if not self.hub:
            return
        with self._events_flush_lock:
            if self._events_flush_armed:
                return
            self._events_flush_armed = True
        self.hub.call_soon(self._arm_events_flush_promise)

    def _arm_events_flush(self) -> None:
        self.hub.call_later(EVENT_FLUSH_SECONDS, self._flush_events_now)

    def _flush_events_now(self) -> None:
        with self._events_flush_lock:
            self._events_flush_armed = False
        self._flush_events()

    def stop(self) -> None:
        self._flush_events()  # nothing buffered is lost when the worker stops
        super().stop()
