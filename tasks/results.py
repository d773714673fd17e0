"""Stored results: enrichment:<event_id> (JSON, TTL) and the enrichment.completed channel.

A stored result is never replaced by a later submission: `save` writes only where nothing is stored (SET NX) and
hands back what is stored otherwise; only `add_to_own` (the risk task, adding Nemotron's answer to the result its
own event just stored) rewrites, and only a result that is there (SET XX). A result is announced on
enrichment.completed only once it is stored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from tasks.schemas import EnrichmentResult

log = logging.getLogger(__name__)

COMPLETED_CHANNEL = "enrichment.completed"

# Store a result only where none is, and announce it only then; else hand back what is stored. One atomic step
# (a look, a write and a publish in three round trips before, with a retry for a key expiring in between).
SAVE_ONCE = """
if redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX') then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
  return false
end
return redis.call('GET', KEYS[1])
"""


def result_key(event_id: str) -> str:
    return f"enrichment:{event_id}"


class ResultStore:
    """Writes each result under its event id with a TTL, once, and announces it."""

    def __init__(self, client: redis.Redis, ttl_seconds: int):
        self.client = client
        self.ttl_seconds = ttl_seconds
        self._save_once = client.register_script(SAVE_ONCE)

    def save(self, result: EnrichmentResult) -> dict:
        """Store and announce the event's first result; when one is stored already, return that one instead."""
        keys, args, payload = self._save_call(result)
        return self._saved(result, payload, self._save_once(keys=keys, args=args))

    def save_in(self, pipe: redis.client.Pipeline, result: EnrichmentResult) -> Callable[[Any], dict]:
        """The same save, queued in the caller's pipeline: call what this returns with the pipeline's answer for
        it (its first, if it was queued first) to get what `save` would have returned."""
        keys, args, payload = self._save_call(result)
        # EVAL with the script's text, not the registered Script: in a pipeline redis-py checks SCRIPT EXISTS in
        # a round trip of its own before every execute. Redis keeps the compiled script by its digest either way.
        pipe.eval(SAVE_ONCE, len(keys), *keys, *args)
        return lambda answer: self._saved(result, payload, answer)

    def _save_call(self, result: EnrichmentResult) -> tuple[list[str], list[Any], dict]:
        payload = result.model_dump(mode="json")
        args = [json.dumps(payload), self.ttl_seconds, COMPLETED_CHANNEL, json.dumps(announcement(result))]
        return [result_key(result.event_id)], args, payload

    @staticmethod
    def _saved(result: EnrichmentResult, payload: dict, stored: bytes | None) -> dict:
        if stored is None:
            return payload
        kept = json.loads(stored)
        log.info("event %s already has a %s result; the %s one is not stored", result.event_id,
                 kept.get("status"), result.status)
        return kept

    def add_to_own(self, result: EnrichmentResult) -> dict:
        """Rewrite the event's stored result with more of its own pipeline's answer (the risk call); never creates."""
        payload = result.model_dump(mode="json")
        if self.client.set(result_key(result.event_id), json.dumps(payload), ex=self.ttl_seconds, xx=True):
            self.announce(result)
            return payload
        return self.get(result.event_id) or payload

    def announce(self, result: EnrichmentResult) -> None:
        self.client.publish(COMPLETED_CHANNEL, json.dumps(announcement(result)))

    def get(self, event_id: str) -> dict | None:
        raw = self.client.get(result_key(event_id))
        return json.loads(raw) if raw else None


def announcement(result: EnrichmentResult) -> dict[str, str]:
    """{"event_id", "status"} on enrichment.completed; a rejection adds the id it was submitted under."""
    message = {"event_id": result.event_id, "status": result.status}
    if result.submitted_event_id is not None:
        message["submitted_event_id"] = result.submitted_event_id
    return message
