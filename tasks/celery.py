"""The Celery application every process of the pool shares."""

from celery import Celery

from tasks.metrics import connect_worker_signals

TASK_MODULES = ["tasks.router", "tasks.model_task", "tasks.assemble", "tasks.sweeper", "tasks.risk_task", "tasks.control"]

app = Celery("model_zoo", include=TASK_MODULES)
app.config_from_object("celeryconfig")
connect_worker_signals()

import tasks.control  # noqa: E402,F401  - registers `inspect loaded_models` for workers and the celery CLI
