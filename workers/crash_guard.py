"""A device worker's crash accounting: the journal of calls in flight, the watchdog's hard limit, and isolation
after a crash, around every model call."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from workers.journal import CallJournal
from workers.settings import Settings
from workers.watchdog import Call, CallWatchdog, exit_process


class CrashGuard:
    """Wraps each model call: journaled (a crash is blamed on the tasks inside it), watched (the hard time limit,
    in a threads pool), and run alone for a while after a crash whose culprit is unknown."""

    ISOLATION_SECONDS = 60.0  # after a crash, model calls run one at a time this long (see open_journal)

    def __init__(self, settings: Settings, queue: str, threaded: bool) -> None:
        self.settings = settings
        self.queue = queue
        self.watchdog = CallWatchdog(settings.model_time_limit, on_overrun=self.overrun) if threaded else None
        self.journal: CallJournal | None = None
        self.isolate_until = 0.0
        self._isolation = threading.Lock()

    def open_journal(self) -> list[str]:
        """Start this process's call journal; returns the tasks a dead predecessor left inside a model call.

        After a crash the calls run one at a time for ISOLATION_SECONDS: the predecessor died with several
        calls in flight and cannot tell which one killed it, but the next crash, if any, names its culprit
        alone, so a poison task does not use up the redelivery cap of the tasks that ran beside it.
        """
        self.journal = CallJournal(self.settings.journal_dir / self.settings.pool_id / f"{self.queue}.journal")
        blamed, suspects = self.journal.blamed(), self.journal.unfinished()
        self.journal.open()
        if blamed:  # the watchdog ended it and named the call: nobody else is suspected
            return blamed
        if suspects:
            self.isolate_until = time.monotonic() + self.ISOLATION_SECONDS
        return suspects

    @contextlib.contextmanager
    def guarding(self, model: str, tasks: list[str]) -> Iterator[None]:
        """The model call inside the block: alone while isolating, journaled, watched."""
        isolating = time.monotonic() < self.isolate_until
        with self._isolation if isolating else contextlib.nullcontext():
            if self.journal is not None:
                self.journal.started(tasks)
            try:
                with self.watchdog.watching(model, tuple(tasks)) if self.watchdog else contextlib.nullcontext():
                    yield
            finally:
                if self.journal is not None:
                    self.journal.finished(tasks)

    def overrun(self, call: Call, limit: float) -> None:
        """The watchdog's reaction: name the overrunning call's tasks in the journal, then end the process."""
        if self.journal is not None:
            self.journal.blame(list(call.tasks))
        exit_process(call, limit)

    def start(self) -> None:
        if self.watchdog is not None:
            self.watchdog.start()

    def stop(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.journal is not None:
            self.journal.close()
