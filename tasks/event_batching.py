"""The workers' consumer: Celery's own, publishing buffered task events at most every EVENT_FLUSH_SECONDS.

Celery buffers a worker's task events (received, started, succeeded) and publishes what is buffered on the next
turn of the event loop: with six to eight tasks per detection event that is a Redis PUBLISH for almost every
task event, the largest single cost in a device worker's CPU profile (scripts/bench.py, --noop: 16%). Waiting
EVENT_FLUSH_SECONDS for company sends them as one `task.multi` message per interval instead (Celery's own
grouped format; Flower and `celery events` read it as before), a tenth of a second later at most. Events still
buffered when the consumer stops are published then. celeryconfig names this class as `worker_consumer`.
"""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer
from vine import promise

EVENT_FLUSH_SECONDS = 0.1


class Consumer(CeleryConsumer):
    """Celery's consumer with task events published in batches, at most EVENT_FLUSH_SECONDS after the first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._events_flush_armed = False
        self._arm_events_flush_promise = promise(self._arm_events_flush)

    def on_send_event_buffered(self) -> None:
        # May run on a pool thread (a threads pool sends task-started/succeeded from the task's thread):
        # call_soon is the hub's thread-safe way in; the timer is armed on the loop's own thread.
        if self.hub:
            self.hub.call_soon(self._arm_events_flush_promise)

    def _arm_events_flush(self) -> None:
        if not self._events_flush_armed:
            self._events_flush_armed = True
            self.hub.call_later(EVENT_FLUSH_SECONDS, self._flush_events_now)

    def _flush_events_now(self) -> None:
        self._events_flush_armed = False
        self._flush_events()

    def stop(self) -> None:
        self._flush_events()  # nothing buffered is lost when the worker stops
        super().stop()
