"""Prometheus metrics of events as a whole: how they ended, how long assembly took, and messages refused unread."""

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
