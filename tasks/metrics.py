"""Prometheus metrics of events as a whole (how they ended, how long assembly took), of messages refused unread,
and of the pool's delivery (Redis writes retried, deliveries parked, taken messages restored)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from workers.metrics import LATENCY_BUCKETS

EVENTS = Counter("model_zoo_events_total", "Events finished, by result status", ["status"])
MESSAGES_REFUSED = Counter(
    "model_zoo_messages_refused_total", "Messages refused before they were decoded, by queue and reason", ["queue", "reason"]
)
ASSEMBLY_SECONDS = Histogram(
    "model_zoo_chord_assembly_seconds", "From routing to the assembled result", buckets=LATENCY_BUCKETS
)
REDIS_WRITE_RETRIES = Counter(
    "model_zoo_redis_write_retries_total",
    "Writes of the router, the assembly and the sweeper that Redis refused and that were tried again, by step and "
    "reason (full: OOM at maxmemory; unreachable: down or restarting)", ["step", "reason"],
)
DELIVERIES_PARKED = Counter(
    "model_zoo_deliveries_parked_total",
    "Messages a worker took from a queue whose unacked bookkeeping Redis refused: kept in memory and put back on "
    "their queue instead of being dropped", ["queue"],
)
TAKEN_RESTORED = Counter(
    "model_zoo_taken_messages_restored_total",
    "Unacknowledged messages put back on a queue at once: a worker's own after a reconnect or a restart, or a dead "
    "device worker's moved to a live one", ["queue", "why"],
)
EVENTS_REFUSED_FULL = Counter(
    "model_zoo_events_refused_full_total",
    "Events the router answered at once (partial, errors.storage) because Redis was full (OOM at maxmemory) when "
    "their frames and ledger entry, or their model tasks, were to be written; by step (record, send)", ["step"],
)
