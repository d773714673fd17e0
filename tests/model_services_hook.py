"""Stands in for the one call a device worker's start-up makes (tasks/model_task.py owns it): once the prefork
child has its runtime, start its model services (commands, warm-up, PRELOAD_MODELS).

Loaded into test workers with `celery -A tasks worker ... -I tests.model_services_hook`.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init

from workers.settings import get_settings


@worker_process_init.connect(weak=False)
def start_model_services(**_: Any) -> None:
    if get_settings().is_device_worker:
        from tasks.model_task import runtime

        runtime().services.start()
