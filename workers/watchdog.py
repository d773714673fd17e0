"""Hard time limits for model calls in a threads pool: a watchdog that ends the process when a call overruns.

A thread cannot be interrupted, so a model call stuck in C code (or on a wedged GPU) would hold its model and
its thread forever. The watchdog notes when each call starts and ends; when one has run longer than the hard
limit it ends the whole worker process, like prefork's hard time limit ends a child. The supervisor (`python -m
workers start`, or the container's restart policy) starts a fresh one, which puts the tasks the dead process had
taken back on its queue (tasks/redelivery.py); the call journal tells which of them were inside a model call.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)

OVERRUN_EXIT_CODE = 75  # EX_TEMPFAIL: the supervisor restarts the worker


@dataclass(frozen=True)
class Call:
    """One model call in progress."""

    model: str
    started: float
    tasks: tuple[str, ...]


def exit_process(call: Call, limit: float) -> None:
    """The default reaction to an overrun: log it and end the process at once (no cleanup can be trusted)."""
    log.critical("model %s has run %.1f s, past the %.0f s hard time limit (tasks %s): ending this worker process",
                 call.model, time.monotonic() - call.started, limit, ", ".join(call.tasks) or "-")
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(OVERRUN_EXIT_CODE)


class CallWatchdog:
    """Tracks model calls in progress and reacts (by default: ends the process) when one runs past `limit`."""

    def __init__(self, limit: float, interval: float = 1.0, on_overrun: Callable[[Call, float], None] = exit_process,
                 clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.interval = interval
        self.on_overrun = on_overrun
        self.clock = clock
        self._calls: dict[int, Call] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watching(self, model: str, tasks: tuple[str, ...] = ()) -> Iterator[None]:
        """Mark one model call as running for the duration of the block."""
        number = next(self._ids)
        with self._lock:
            self._calls[number] = Call(model, self.clock(), tasks)
        try:
            yield
        finally:
            with self._lock:
                self._calls.pop(number, None)

    def overdue(self) -> list[Call]:
        now = self.clock()
        with self._lock:
            return [call for call in self._calls.values() if now - call.started > self.limit]

    def check(self) -> None:
        for call in self.overdue():
            self.on_overrun(call, self.limit)

    def start(self) -> CallWatchdog:
        def run() -> None:
            while not self._stop.wait(self.interval):
                self.check()

        self._thread = threading.Thread(target=run, name="model-call-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
