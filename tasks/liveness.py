"""A worker shows it is alive by touching a file from its consumer's event loop while it is connected and consuming.

The launcher (`python -m workers start`) restarts a worker whose file has gone stale while Redis answers: a worker
whose consumer died or hung (issue 28: a router that stopped consuming after an OOM reply stalled the whole pool)
is then replaced, while one that is only waiting for Redis to come back is left alone. A Celery consumer bootstep
(public API); the file is WORKER_ALIVE_FILE, set by the launcher.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from celery import bootsteps

from workers.settings import get_settings

log = logging.getLogger(__name__)

TOUCH_SECONDS = 5.0


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


class ShowAlive(bootsteps.StartStopStep):
    """Touch WORKER_ALIVE_FILE every TOUCH_SECONDS while the consumer runs and holds a connection."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    name = "model_zoo.show_alive"

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        super().__init__(consumer, **kwargs)
        self.path = get_settings().launch.worker_alive_file
        self.entry: Any = None

    def start(self, consumer: Any) -> None:
        if self.path is None:
            return
        self.show(consumer)
        self.entry = consumer.timer.call_repeatedly(TOUCH_SECONDS, self.show, (consumer,))

    def show(self, consumer: Any) -> None:
        running = consumer.blueprint is not None and consumer.blueprint.state == bootsteps.RUN
        if running and consumer.connection is not None and consumer.connection.connected:
            try:
                touch(self.path)
            except OSError as exc:
                log.warning("cannot touch %s: %s", self.path, exc)

    def stop(self, consumer: Any) -> None:
        if self.entry is not None:
            self.entry.cancel()
            self.entry = None

    shutdown = stop
