"""The workers' consumer publishes buffered task events in batches: one flush armed at a time, none left behind."""

from __future__ import annotations

import threading

from tasks.celery_internals.event_flush import EVENT_FLUSH_SECONDS, Consumer


class FakeHub:
    """The event loop's two entry points the consumer uses, recorded instead of run."""

    def __init__(self) -> None:
        self.soon: list = []
        self.later: list = []

    def call_soon(self, callback) -> None:
        self.soon.append(callback)

    def call_later(self, delay: float, callback) -> None:
        self.later.append((delay, callback))

    def run_soon(self) -> None:
        pending, self.soon = self.soon, []
        for callback in pending:
            callback()

    def fire_timers(self) -> None:
        pending, self.later = self.later, []
        for _, callback in pending:
            callback()


def consumer_with(hub: FakeHub, on_flush=lambda: None) -> Consumer:
    """Consumer's own batching methods over a fake hub (Celery's __init__ needs a whole worker)."""
    consumer = Consumer.__new__(Consumer)
    consumer.hub = hub
    consumer._prepare_events_flush()
    consumer._flush_events = on_flush
    return consumer


def test_many_events_wake_the_loop_once_and_flush_once():
    hub, flushes = FakeHub(), []
    consumer = consumer_with(hub, on_flush=lambda: flushes.append(1))
    threads = [threading.Thread(target=lambda: [consumer.on_send_event_buffered() for _ in range(50)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(hub.soon) == 1, "400 events from 8 threads wake the event loop once"
    hub.run_soon()
    assert [delay for delay, _ in hub.later] == [EVENT_FLUSH_SECONDS]
    hub.fire_timers()
    assert flushes == [1]
    consumer.on_send_event_buffered()
    assert len(hub.soon) == 1, "after a flush the next event arms the next one"


def test_an_event_buffered_while_a_flush_runs_gets_a_flush_of_its_own():
    hub = FakeHub()
    consumer = consumer_with(hub)
    consumer._flush_events = lambda: consumer.on_send_event_buffered()  # a pool thread buffers one mid-flush
    consumer.on_send_event_buffered()
    hub.run_soon()
    hub.fire_timers()
    assert len(hub.soon) == 1, "the event that came during the flush is not left in the buffer"
