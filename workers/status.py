"""What a device worker tells Redis and Prometheus about itself: its cache state, on every change and on a
heartbeat that also releases idle models."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from model_cache import ModelCache
from workers.metrics import MEMORY_SHARE, MEMORY_USED, record_model_bytes
from workers.state import publish_state, withdraw_state

log = logging.getLogger(__name__)


class StatusPublisher:
    """SET workers:state:<worker> (a TTL of three heartbeats: a dead worker drops out by itself), the memory
    gauges, and the heartbeat thread. `describe(snapshot)` is the worker's state around a cache snapshot."""

    PUBLISH_EVERY = 1.0  # seconds between state publishes caused by tasks alone

    def __init__(self, cache: ModelCache, worker: str, heartbeat_seconds: float,
                 describe: Callable[[dict[str, Any]], dict[str, Any]], client: redis.Redis | None = None) -> None:
        self.cache = cache
        self.worker = worker
        self.heartbeat_seconds = heartbeat_seconds
        self.describe = describe
        self.client = client
        self._published_at = 0.0
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def publish(self) -> None:
        """Publish the state now (the cache calls this on every load and eviction)."""
        self._published_at = time.monotonic()
        snapshot = self.cache.snapshot()
        MEMORY_USED.labels(self.worker).set(snapshot["used_bytes"])
        MEMORY_SHARE.labels(self.worker).set(snapshot["budget_bytes"])
        record_model_bytes(self.worker, snapshot)
        if self.client is None:
            return
        ttl = max(1, int(self.heartbeat_seconds * 3))
        try:
            publish_state(self.client, self.worker, json.dumps(self.describe(snapshot)), ttl)
        except redis.RedisError as exc:
            log.warning("could not publish worker state: %s", exc)

    def publish_soon(self) -> None:
        """Publish after a task at most every PUBLISH_EVERY seconds: loads and evictions publish at once, so
        routing never waits; only the hit counters and ages may lag that long."""
        if time.monotonic() - self._published_at >= self.PUBLISH_EVERY:
            self.publish()

    def start(self) -> None:
        """Announce the worker, then republish and release idle models every heartbeat, from a daemon thread."""
        self.publish()

        def beat() -> None:
            while not self._stop.wait(self.heartbeat_seconds):
                try:
                    self.cache.release_idle()
                finally:
                    self.publish()

        self._heartbeat = threading.Thread(target=beat, name="cache-heartbeat", daemon=True)
        self._heartbeat.start()

    def stop(self) -> None:
        """Stop the heartbeat and take the worker's state out of Redis."""
        self._stop.set()
        if self.client is not None:
            withdraw_state(self.client, self.worker)
