"""Stored results: enrichment:<event_id> (JSON, TTL) and the enrichment.completed channel.

A stored result is never replaced by a later submission: `save` writes only where nothing is stored (SET NX) and
hands back what is stored otherwise; only `add_to_own` (the risk task, adding Nemotron's answer to the result its
own event just stored) rewrites, and only a result that is there (SET XX). A result is announced on
enrichment.completed only once it is stored.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import redis

if TYPE_CHECKING:
    from tasks.schemas import EnrichmentResult

log = logging.getLogger(__name__)

COMPLETED_CHANNEL = "enrichment.completed"


def result_key(event_id: str) -> str:
    return f"enrichment:{event_id}"


class ResultStore:
    """Writes each result under its event id with a TTL, once, and announces it."""

    def __init__(self, client: redis.Redis, ttl_seconds: int):
        self.client = client
        self.ttl_seconds = ttl_seconds

    def save(self, result: EnrichmentResult) -> dict:
        """Store and announce the event's first result; when one is stored already, return that one instead."""
        payload = result.model_dump(mode="json")
        if self.client.set(result_key(result.event_id), json.dumps(payload), ex=self.ttl_seconds, nx=True):
            self.announce(result)
            return payload
        stored = self.get(result.event_id)
        if stored is None:  # expired between the two calls: nothing is stored, so this one may be
            return self.save(result)
        log.info("event %s already has a %s result; the %s one is not stored", result.event_id,
                 stored.get("status"), result.status)
        return stored

    def add_to_own(self, result: EnrichmentResult) -> dict:
        """Rewrite the event's stored result with more of its own pipeline's answer (the risk call); never creates."""
        payload = result.model_dump(mode="json")
        if self.client.set(result_key(result.event_id), json.dumps(payload), ex=self.ttl_seconds, xx=True):
            self.announce(result)
            return payload
        return self.get(result.event_id) or payload

    def announce(self, result: EnrichmentResult) -> None:
        """{"event_id", "status"} on enrichment.completed; a rejection adds the id it was submitted under."""
        message = {"event_id": result.event_id, "status": result.status}
        if result.submitted_event_id is not None:
            message["submitted_event_id"] = result.submitted_event_id
        self.client.publish(COMPLETED_CHANNEL, json.dumps(message))

    def get(self, event_id: str) -> dict | None:
        raw = self.client.get(result_key(event_id))
        return json.loads(raw) if raw else None
