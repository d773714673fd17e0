"""Stored results: enrichment:<event_id> (JSON, TTL) and the enrichment.completed channel."""

from __future__ import annotations

import json
from functools import lru_cache

import redis

from tasks.schemas import EnrichmentResult
from tasks.settings import get_settings

COMPLETED_CHANNEL = "enrichment.completed"


def result_key(event_id: str) -> str:
    return f"enrichment:{event_id}"


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    """This process's Redis client (redis-py's pool reconnects by itself after a fork)."""
    settings = get_settings()
    return redis.Redis.from_url(
        settings.broker_url, socket_keepalive=True, health_check_interval=10,
        retry_on_timeout=True, socket_connect_timeout=5,
    )


class ResultStore:
    """Writes each result once per event id and announces it."""

    def __init__(self, client: redis.Redis, ttl_seconds: int):
        self.client = client
        self.ttl_seconds = ttl_seconds

    def save(self, result: EnrichmentResult) -> dict:
        payload = result.model_dump(mode="json")
        body = json.dumps(payload)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(result_key(result.event_id), body, ex=self.ttl_seconds)
            pipe.publish(COMPLETED_CHANNEL, json.dumps({"event_id": result.event_id, "status": result.status}))
            pipe.execute()
        return payload

    def get(self, event_id: str) -> dict | None:
        raw = self.client.get(result_key(event_id))
        return json.loads(raw) if raw else None


def result_store() -> ResultStore:
    return ResultStore(redis_client(), get_settings().result_ttl_seconds)
