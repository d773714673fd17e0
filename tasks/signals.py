"""Worker-process plumbing hooked to Celery's signals: /metrics from each worker's parent, dead children's gauges."""

from __future__ import annotations

import os

from workers.metrics import mark_child_dead, serve_metrics
from workers.settings import get_settings


def connect_worker_signals() -> None:
    """Serve metrics from each worker's parent, and drop a finished child's live gauges."""
    from celery.signals import worker_init, worker_process_shutdown

    worker_init.connect(lambda **_: serve_metrics(get_settings().metrics), weak=False)
    worker_process_shutdown.connect(lambda **_: mark_child_dead(os.getpid()), weak=False)
