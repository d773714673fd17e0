"""The ledger of events in flight: what each routed event expects, and by when (read by the sweeper and assembly);
who holds each event's id (its claim), and the duplicates waiting for its result.

A duplicate of an event in flight costs nothing while it waits: its task id joins waiters:<event_id> in the same
atomic step that finds the id claimed, and whoever finishes the event (assembly, the sweeper, or the router when
the original is rejected) takes the waiters in the same transaction that stores the result or drops the claim, and
answers them. So a duplicate is either in the set when the event finishes, or sees the stored result itself.
"""

from __future__ import annotations

import time

import redis

from tasks.schemas import RoutedEvent
from workers.redis_writes import queued

DEADLINES_KEY = "ledger:deadlines"
WAITING_KEY = "ledger:waiting"  # event ids with waiting duplicates, scored by when the sweeper answers them anyway

# The stored result, else the claim (taken now, or already held by this owner: a redelivered submission), else a
# place among the waiters: one atomic step.
CLAIM_OR_WAIT = """
local stored = redis.call('GET', KEYS[1])
if stored then return {stored, 0} end
if redis.call('SET', KEYS[2], ARGV[5], 'NX', 'EX', ARGV[1]) then return {false, 1} end
if redis.call('GET', KEYS[2]) == ARGV[5] then return {false, 1} end
if ARGV[2] ~= '' then
  redis.call('SADD', KEYS[3], ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[1])
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[4])
end
return {false, 0}
"""


def ledger_key(event_id: str) -> str:
    return f"ledger:{event_id}"


def claim_key(event_id: str) -> str:
    return f"claim:{event_id}"


def waiters_key(event_id: str) -> str:
    return f"waiters:{event_id}"


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

    def claim_or_wait(self, event_id: str, stored_key: str, ttl_seconds: float, waiter: str | None = None,
                      wait_until: float = 0.0, owner: str = "1") -> tuple[bytes | None, bool]:
        """(what `stored_key` holds, whether `owner` holds the claim), in one atomic step; when neither, `waiter`
        (a task id) joins the event's waiters, to be answered when the event finishes (or at `wait_until`).

        The claim holds its owner (the router's task id): a redelivery of the same submission (its router was
        killed, or its message restored after a Redis restart) finds its own claim and carries on, where any
        other submission of the id waits for the result.
        """
        keys = [stored_key, claim_key(event_id), waiters_key(event_id), WAITING_KEY]
        stored, claimed = self.client.eval(CLAIM_OR_WAIT, len(keys), *keys, max(1, int(ttl_seconds)), waiter or "",
                                           wait_until, event_id, owner)
        return stored, bool(claimed)

    def claimed(self, event_id: str) -> bool:
        return bool(self.client.exists(claim_key(event_id)))

    def release(self, event_id: str) -> list[str]:
        """Drop the claim (the event ends without a result); returns the waiters it had, who are no longer waiting."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(claim_key(event_id))
            at = self.take_waiters(event_id, pipe)
            return waiters_in(pipe.execute(), at)

    def take_waiters(self, event_id: str, pipe: redis.client.Pipeline) -> int:
        """Queue the reading and removal of the event's waiters into `pipe`; their place in its answers
        (`waiters_in(answers, place)`)."""
        at = len(pipe)
        pipe.smembers(waiters_key(event_id)).delete(waiters_key(event_id)).zrem(WAITING_KEY, event_id)
        return at

    def waiting_overdue(self, now: float | None = None, limit: int = 100) -> list[str]:
        """Events whose duplicates have waited past their deadline (the original never finished)."""
        now = time.time() if now is None else now
        return [m.decode() for m in self.client.zrangebyscore(WAITING_KEY, 0, now, start=0, num=limit)]

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


def waiters_in(answers: list, place: int) -> list[str]:
    """The waiters' task ids among a pipeline's answers, at the place take_waiters gave."""
    return sorted(member.decode() if isinstance(member, bytes) else member for member in answers[place] or ())
