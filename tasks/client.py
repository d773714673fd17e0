"""What the backend uses: submit enrich_detection by name, wait for its result, read stored results.

It imports no task code, no worker signals and no model zoo: a thin Celery app that sends by name.
"""

from __future__ import annotations

import json
from typing import Any

import redis
from celery import Celery
from celery.result import AsyncResult

from tasks.results import result_key


def client_app(redis_url: str) -> Celery:
    """A thin Celery app that only sends tasks by name (no task code imported), JSON only."""
    app = Celery("model_zoo_client", broker=redis_url, backend=redis_url)
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"], result_accept_content=["json"],
        broker_connection_retry_on_startup=True, result_extended=True,
    )
    return app


class EnrichmentClient:
    """Submit detection events and read their results."""

    def __init__(self, redis_url: str):
        self.app = client_app(redis_url)
        self.redis = redis.Redis.from_url(redis_url)

    def submit(self, event: dict[str, Any]) -> AsyncResult:
        return self.app.send_task("enrich_detection", args=[event], queue="router")

    def enrich(self, event: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
        """Submit and wait: AsyncResult.get() follows the router's replacement chord to the assembled result."""
        return self.submit(event).get(timeout=timeout)

    def loaded_models(self, timeout: float = 2.0) -> dict[str, dict[str, Any]]:
        """Each worker's reply to the loaded_models remote-control command, by node name."""
        replies = self.app.control.broadcast("loaded_models", reply=True, timeout=timeout) or []
        return {worker: state for reply in replies for worker, state in reply.items()}

    def stored(self, event_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(result_key(event_id))
        return json.loads(raw) if raw else None

    def close(self) -> None:
        self.redis.close()
        self.app.close()
