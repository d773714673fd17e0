"""The ledger of events in flight: what each routed event expects, and by when (read by the sweeper)."""

from __future__ import annotations

import time

import redis

from tasks.schemas import RoutedEvent
from workers.redis_writes import queued

DEADLINES_KEY = "ledger:deadlines"


def ledger_key(event_id: str) -> str:
    return f"ledger:{event_id}"


def claim_key(event_id: str) -> str:
    return f"claim:{event_id}"


class Ledger:
    """ledger:<event_id> holds the RoutedEvent; ledger:deadlines orders events by when they are overdue."""

    def __init__(self, client: redis.Redis):
        self.client = client

    def open(self, routed: RoutedEvent, deadline_seconds: float, ttl_seconds: int,
             pipe: redis.client.Pipeline | None = None) -> None:
        """Record the routed event and its deadline; into `pipe` (executed by the caller) when given."""
        event_id = routed.event.event_id
        with queued(self.client, pipe) as writes:
            writes.set(ledger_key(event_id), routed.model_dump_json(), ex=ttl_seconds)
            writes.zadd(DEADLINES_KEY, {event_id: time.time() + deadline_seconds})

    def update(self, routed: RoutedEvent) -> bool:
        """Rewrite an open entry (a second round's models were added), keeping its TTL and deadline; False when
        the entry is gone (the event was finished meanwhile)."""
        return bool(self.client.set(ledger_key(routed.event.event_id), routed.model_dump_json(), xx=True,
                                    keepttl=True))

    def claim_unless_stored(self, event_id: str, stored_key: str, ttl_seconds: float,
                            owner: str = "1") -> tuple[bytes | None, bool]:
        """(what `stored_key` holds, whether `owner` holds the claim), read and tried at one instant (MULTI).

        One round trip instead of a look, a claim and a second look: nothing can be stored between them.
        The claim holds its owner (the router's task id): a redelivery of the same submission (its router was
        killed, or its message restored after a Redis restart) finds its own claim and carries on, where any
        other submission of the id waits for the result. A caller that finds a stored value and holds the claim
        releases it.
        """
        key = claim_key(event_id)
        with self.client.pipeline(transaction=True) as pipe:
            stored, _, holder = pipe.get(stored_key).set(key, owner, nx=True, ex=max(1, int(ttl_seconds))).get(
                key).execute()
        return stored, holder is not None and holder.decode(errors="replace") == owner

    def claimed(self, event_id: str) -> bool:
        return bool(self.client.exists(claim_key(event_id)))

    def release(self, event_id: str) -> None:
        self.client.delete(claim_key(event_id))

    def close(self, event_id: str, pipe: redis.client.Pipeline | None = None) -> None:
        """Forget the event in flight: its entry, its claim, its deadline (into `pipe` when given)."""
        with queued(self.client, pipe) as writes:
            writes.delete(ledger_key(event_id), claim_key(event_id))
            writes.zrem(DEADLINES_KEY, event_id)

    def overdue(self, now: float | None = None, limit: int = 100) -> list[str]:
        now = time.time() if now is None else now
        return [m.decode() for m in self.client.zrangebyscore(DEADLINES_KEY, 0, now, start=0, num=limit)]

    def routed(self, event_id: str) -> RoutedEvent | None:
        raw = self.client.get(ledger_key(event_id))
        return RoutedEvent.model_validate_json(raw) if raw else None
