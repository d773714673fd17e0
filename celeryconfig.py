"""Celery configuration: broker and backend from the environment, JSON only, at-least-once delivery."""

from tasks import celery_internals
from workers.settings import get_settings

_settings = get_settings()

broker_url = _settings.broker_url
# kombu's Redis transport with the pool's trust boundary: internal messages signed (POOL_SIGNING_KEY), every message
# on the pool's queues screened before it is decoded (tasks/celery_internals/trusted_transport.py); None on the
# stock path (kombu's own transport).
broker_transport = celery_internals.broker_transport(broker_url)
result_backend = _settings.backend_url

# JSON only: a pickled message is refused, not executed.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

# At-least-once: a task is acknowledged after it ran, and requeued if its worker dies under it.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
# Longer than any model task can run, so a slow task is not redelivered while still running.
# body_encoding None: a message carries its body as JSON text, not base64 of it (kombu's Redis default): a third fewer
# bytes for every task message, its unacknowledged copy and every task event. Each message names its own encoding,
# so a backend's base64 messages are read as before.
broker_transport_options = {"visibility_timeout": _settings.visibility_timeout_seconds, "body_encoding": None}
result_backend_transport_options = {"visibility_timeout": _settings.visibility_timeout_seconds}
broker_connection_retry_on_startup = True
broker_connection_max_retries = None
result_backend_always_retry = True
result_backend_max_retries = 20
redis_backend_health_check_interval = 10
redis_socket_keepalive = True

# Per-model time limits (prefork enforces them): a soft limit yields a "timeout" record, the hard one kills the child.
task_annotations = {
    "run_model": {"soft_time_limit": _settings.model_soft_time_limit, "time_limit": _settings.model_time_limit},
}

# "router" and Celery's default "celery" are the public queues (a backend's plain send_task lands on "celery"; the
# router worker consumes both, workers.launch.ROUTER_QUEUES): only enrich_detection runs from them (tasks/trust.py).
# The pool's own tasks go to its internal queues, whose messages carry its signature.
task_default_queue = "router"
task_routes = {
    "enrich_detection": {"queue": "router"},
    "assemble": {"queue": "assemble"},
    "assess_event_risk": {"queue": "assemble"},
    "sweep_stalled_events": {"queue": "assemble"},  # internal: the public queue runs enrich_detection only
    "rescue_dead_queues": {"queue": "assemble"},
}
# A publish rides out a Redis restart (a few seconds, then LOADING while it reads its AOF) instead of failing the task
# that sends it after Celery's default 0.6 s; past this the pool's own steps try again (tasks/redis_retry.py).
task_publish_retry_policy = {"max_retries": 30, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0}
# Celery's own task results (what AsyncResult.get() and the sweeper read) live a day; the enrichment itself stays
# RESULT_TTL_SECONDS at enrichment:<event_id>.
result_expires = _settings.task_result_ttl_seconds
# Stored task results name their task and worker (readable with redis-cli). They would also keep each call's
# arguments: enrich_detection replaces its own (the event, frames and all) with a summary before returning.
result_extended = True
# No STARTED state in the backend: with result_extended it would store every task's arguments once more
# (enrich_detection's carry the whole frame). Flower still sees tasks start through task events (-E).
task_track_started = False

# Task events for Flower (and `celery events`): about a third of the pool's per-event overhead on a small
# box (scripts/bench.py), so TASK_EVENTS=0 turns them off where nobody watches.
worker_send_task_events = _settings.task_events
# No task-sent events: publishing one beside every task message cost the router a fifth of each send
# (scripts/bench.py); Flower follows tasks from the workers' task-received events onwards.
task_send_sent_event = False
# Task events go out in batches, at most 0.1 s after the first of them (tasks/celery_internals/event_flush.py),
# instead of one Redis PUBLISH per event-loop turn; Celery's own consumer where those shortcuts are off.
worker_consumer = celery_internals.consumer_class()

worker_hijack_root_logger = False

# Beat runs in its own process (python -m workers beat, or the launcher's): the sweeper, and the rescue of dead
# device workers' queues. Each takes a Redis lock, so a second beat never runs them twice in one interval.
beat_schedule = {
    "sweep-stalled-events": {"task": "sweep_stalled_events", "schedule": _settings.sweep_interval_seconds},
    "rescue-dead-queues": {"task": "rescue_dead_queues", "schedule": _settings.rescue_interval_seconds,
                           "options": {"expires": _settings.rescue_interval_seconds}},
}
