"""Worker-process plumbing hooked to Celery's signals: /metrics from each worker's parent, dead children's gauges."""

from __future__ import annotations

import logging
import os

from tasks import celery_internals
from workers.metrics import mark_child_dead, serve_metrics
from workers.settings import get_settings

log = logging.getLogger(__name__)

# Celery's per-task INFO lines: "Task ... received" (the consumer) and "Task ... succeeded in ...: <result>" (the
# tracer). Two log records per task, each a few percent of a worker's CPU per event (scripts/bench.py), and the
# second copies every result, enrichment and untrusted text included, into the log.
TASK_LINE_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


def quiet_task_lines(**_: object) -> None:
    """Raise Celery's per-task loggers to WARNING unless TASK_LOG_LINES=1 (their failures are still logged)."""
    level = logging.NOTSET if get_settings().task_log_lines else logging.WARNING
    for name in TASK_LINE_LOGGERS:
        logging.getLogger(name).setLevel(level)


def connect_worker_signals() -> None:
    """Serve metrics from each worker's parent, drop a finished child's live gauges, quiet per-task log lines."""
    from celery.signals import after_setup_logger, worker_init, worker_process_shutdown, worker_ready

    after_setup_logger.connect(quiet_task_lines, weak=False)
    worker_ready.connect(lambda **_: log.info(celery_internals.describe()), weak=False)
    worker_init.connect(quiet_task_lines, weak=False)
    worker_init.connect(lambda **_: serve_metrics(get_settings().metrics), weak=False)
    worker_process_shutdown.connect(lambda **_: mark_child_dead(os.getpid()), weak=False)
