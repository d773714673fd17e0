"""Worker-process plumbing hooked to Celery's signals: /metrics, /healthz and /readyz from each worker's parent,
dead children's gauges, quiet per-task log lines."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import redis

from tasks import celery_internals
from workers.health import CHECK_TIMEOUT_SECONDS, broker_check, device_start_check, serve
from workers.launch import ROUTER_QUEUES
from workers.metrics import QueueDepthCollector, mark_child_dead, metrics_registry
from workers.settings import Settings, get_settings
from workers.state import live_workers

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


def pool_queues(client: redis.Redis, settings: Settings) -> list[str]:
    """The queues whose depth the router reports: its own, the static device queues and every live device queue."""
    live = [state.queue for state in live_workers(client, max_age_seconds=3 * settings.heartbeat_seconds)]
    return [*ROUTER_QUEUES.split(","), *settings.device_queues, *live]


def serve_endpoints(sender: Any = None, **_: Any) -> int | None:
    """At worker start, in the parent: /metrics (the router's also carries the queue depths), /healthz and /readyz
    (the broker answers; on a device worker, warm-up and preload are done) on METRICS_PORT."""
    settings = get_settings()
    worker = getattr(sender, "hostname", None) or f"pid{os.getpid()}"
    client = redis.Redis.from_url(settings.broker_url, socket_timeout=CHECK_TIMEOUT_SECONDS,
                                  socket_connect_timeout=CHECK_TIMEOUT_SECONDS)
    registry = metrics_registry()
    checks = {"broker": broker_check(client)}
    if settings.is_device_worker:
        checks["models"] = device_start_check(client, worker)
    elif settings.worker_role == "router":
        registry.register(QueueDepthCollector(lambda: client, lambda: pool_queues(client, settings)))
    return serve(settings.metrics, registry, worker, checks)


def router_child_ignores_sigterm(**_: object) -> None:
    """A router's pool child ignores SIGTERM: its parent's warm shutdown lets it finish the event it holds.

    A SIGTERM sent to every process at once (systemd's KillMode=control-group, `kill -TERM -<pgid>`) would otherwise
    end the child in the middle of routing an event; Celery's prefork children already ignore SIGINT for the same
    reason. The parent stops its children itself (and the launcher kills them past its grace).
    """
    if get_settings().worker_role == "router":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def connect_worker_signals() -> None:
    """Serve each worker's endpoints from its parent, drop a finished child's live gauges, quiet per-task log lines,
    and keep the router's children through a SIGTERM sent to the whole process group."""
    from celery.signals import (
        after_setup_logger,
        worker_init,
        worker_process_init,
        worker_process_shutdown,
        worker_ready,
    )

    after_setup_logger.connect(quiet_task_lines, weak=False)
    worker_ready.connect(lambda **_: log.info(celery_internals.describe()), weak=False)
    worker_init.connect(quiet_task_lines, weak=False)
    worker_init.connect(serve_endpoints, weak=False)
    worker_process_shutdown.connect(lambda **_: mark_child_dead(os.getpid()), weak=False)
    worker_process_init.connect(router_child_ignores_sigterm, weak=False)
