"""Prometheus metrics of events as a whole: how they ended, and how long assembly took."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from workers.metrics import LATENCY_BUCKETS

EVENTS = Counter("model_zoo_events_total", "Events finished, by result status", ["status"])
ASSEMBLY_SECONDS = Histogram(
    "model_zoo_chord_assembly_seconds", "From routing to the assembled result", buckets=LATENCY_BUCKETS
)
