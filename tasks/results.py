"""Stored results: enrichment:<event_id> (JSON, TTL), announced on the enrichment.completed channel and stream.

A stored result is never replaced by a later submission: `save` writes only where nothing is stored (SET NX) and
hands back what is stored otherwise; only `add_to_own` (the risk task, adding Nemotron's answer to the result its
own event just stored) rewrites, and only a result that is there (SET XX). A result is announced only once it is
stored, in the same atomic step: PUBLISH for live listeners, and XADD to the completion stream (capped near
COMPLETION_STREAM_MAXLEN entries) for backends that read it with a consumer group and may be away meanwhile.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from tasks.contract import COMPLETED_CHANNEL, COMPLETION_STREAM, SCHEMA_VERSION, result_key

if TYPE_CHECKING:
    from tasks.schemas import EnrichmentResult

log = logging.getLogger(__name__)

__all__ = ["COMPLETED_CHANNEL", "COMPLETION_STREAM", "ResultStore", "announcement", "result_key"]

DEFAULT_STREAM_MAXLEN = 100_000

# Store a result only where none is, and announce it only then; else hand back what is stored. One atomic step:
# the result, its PUBLISH and its stream entry are all there or none is. ARGV[5] is the stream's approximate cap;
# ARGV[6..] the entry's field/value pairs.
SAVE_ONCE = """
if redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX') then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', unpack(ARGV, 6))
  return false
end
return redis.call('GET', KEYS[1])
"""

# The risk task's rewrite of a stored result, announced the same way; nothing when the result is gone.
REWRITE_OWN = """
if redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'XX') then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', unpack(ARGV, 6))
  return 1
end
return 0
"""


class ResultStore:
    """Writes each result under its event id with a TTL, once, and announces it on the channel and the stream."""

    def __init__(self, client: redis.Redis, ttl_seconds: int, stream_maxlen: int = DEFAULT_STREAM_MAXLEN):
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.stream_maxlen = stream_maxlen
        self._save_once = client.register_script(SAVE_ONCE)
        self._rewrite_own = client.register_script(REWRITE_OWN)

    def save(self, result: EnrichmentResult) -> dict:
        """Store and announce the event's first result; when one is stored already, return that one instead."""
        keys, args, payload = self._call(result)
        return self._saved(result, payload, self._save_once(keys=keys, args=args))

    def save_in(self, pipe: redis.client.Pipeline, result: EnrichmentResult) -> Callable[[Any], dict]:
        """The same save, queued in the caller's pipeline: call what this returns with the pipeline's answer for
        it (its first, if it was queued first) to get what `save` would have returned."""
        keys, args, payload = self._call(result)
        # EVAL with the script's text, not the registered Script: in a pipeline redis-py checks SCRIPT EXISTS in
        # a round trip of its own before every execute. Redis keeps the compiled script by its digest either way.
        pipe.eval(SAVE_ONCE, len(keys), *keys, *args)
        return lambda answer: self._saved(result, payload, answer)

    def _call(self, result: EnrichmentResult, revision: int = 1) -> tuple[list[str], list[Any], dict]:
        payload = result.model_dump(mode="json")
        entry = [part for pair in stream_entry(result, revision).items() for part in pair]
        args = [json.dumps(payload), self.ttl_seconds, COMPLETED_CHANNEL, json.dumps(announcement(result)),
                self.stream_maxlen, *entry]
        return [result_key(result.event_id), COMPLETION_STREAM], args, payload

    @staticmethod
    def _saved(result: EnrichmentResult, payload: dict, stored: bytes | None) -> dict:
        if stored is None:
            return payload
        kept = json.loads(stored)
        log.info("event %s already has a %s result; the %s one is not stored", result.event_id,
                 kept.get("status"), result.status)
        return kept

    def add_to_own(self, result: EnrichmentResult) -> dict:
        """Rewrite the event's stored result with more of its own pipeline's answer (the risk call); never creates.
        The rewrite is announced again (a second stream entry for the event, `revision` 2)."""
        keys, args, payload = self._call(result, revision=2)
        if self._rewrite_own(keys=keys, args=args):
            return payload
        return self.get(result.event_id) or payload

    def get(self, event_id: str) -> dict | None:
        raw = self.client.get(result_key(event_id))
        return json.loads(raw) if raw else None


def announcement(result: EnrichmentResult) -> dict[str, str]:
    """{"event_id", "status"} on enrichment.completed; a rejection adds the id it was submitted under."""
    message = {"event_id": result.event_id, "status": result.status}
    if result.submitted_event_id is not None:
        message["submitted_event_id"] = result.submitted_event_id
    return message


def stream_entry(result: EnrichmentResult, revision: int = 1) -> dict[str, str]:
    """A completion stream entry: the event, its status, where the result is and which contract it follows; never
    the result itself. A rejection names the id it was submitted under (its own event_id is rejected-<task id>)."""
    entry = {"event_id": result.event_id, "status": result.status, "result_key": result_key(result.event_id),
             "schema_version": SCHEMA_VERSION}
    if result.submitted_event_id is not None:
        entry["submitted_event_id"] = result.submitted_event_id
    if revision > 1:
        entry["revision"] = str(revision)
    return entry
