"""The Celery application every process of the pool shares (`celery -A tasks` finds it here)."""

from celery import Celery

from tasks import celery_internals
from tasks.liveness import ShowAlive
from tasks.redelivery import owned_queues
from tasks.signals import connect_worker_signals

celery_internals.install()

TASK_MODULES = ["tasks.router", "tasks.model_task", "tasks.assemble", "tasks.sweeper", "tasks.risk_task", "tasks.control",
                "tasks.rescue"]

app = Celery("model_zoo", include=TASK_MODULES)
app.config_from_object("celeryconfig")
celery_internals.add_consumer_steps(app, owned_queues)
app.steps["consumer"].add(ShowAlive)
connect_worker_signals()

import tasks.control  # noqa: E402,F401  - registers `inspect loaded_models` for workers and the celery CLI
