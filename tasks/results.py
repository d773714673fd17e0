"""Stored results: enrichment:<event_id> (JSON, TTL) and the enrichment.completed channel."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import redis

if TYPE_CHECKING:
    from tasks.schemas import EnrichmentResult

COMPLETED_CHANNEL = "enrichment.completed"


def result_key(event_id: str) -> str:
    return f"enrichment:{event_id}"


class ResultStore:
    """Writes each result under its event id with a TTL and announces it."""

    def __init__(self, client: redis.Redis, ttl_seconds: int):
        self.client = client
        self.ttl_seconds = ttl_seconds

    def save(self, result: EnrichmentResult) -> dict:
        payload = result.model_dump(mode="json")
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(result_key(result.event_id), json.dumps(payload), ex=self.ttl_seconds)
            pipe.publish(COMPLETED_CHANNEL, json.dumps({"event_id": result.event_id, "status": result.status}))
            pipe.execute()
        return payload

    def get(self, event_id: str) -> dict | None:
        raw = self.client.get(result_key(event_id))
        return json.loads(raw) if raw else None
