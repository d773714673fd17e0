"""Reliability fixtures: a fresh redis-server and worker pool per test, configured through the environment."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
import redis

from tasks.local_pool import LocalPool, RedisServer
from tasks.results import COMPLETED_CHANNEL

# Scene models are left out: these tests are about delivery, not about which models run.
BASE_ENV = {"SCENE_MODELS": "", "METRICS_PORT_BASE": "0"}


@pytest.fixture
def make_pool(pool_models_dir, tmp_path):
    """make_pool(env, persistent=False, pool="threads") -> (started LocalPool, its RedisServer); both stopped after."""
    started: list[tuple[LocalPool, RedisServer]] = []

    def make(env: dict[str, str], persistent: bool = False, pool: str = "threads") -> tuple[LocalPool, RedisServer]:
        server = RedisServer(persistent=persistent).start()
        pool = LocalPool(server.url, pool_models_dir, tmp_path / f"logs{len(started)}", env=BASE_ENV | env, pool=pool)
        started.append((pool, server))
        return pool.start(), server

    yield make
    for pool, server in started:
        pool.stop()
        print(f"\n--- pool log tail ---\n{pool.log_tail(30)}")
        server.cleanup()


class CompletionCounter:
    """Counts enrichment.completed announcements per event id, from a background subscriber."""

    def __init__(self, url: str):
        self.counts: Counter[str] = Counter()
        self._client = redis.Redis.from_url(url)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(COMPLETED_CHANNEL)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._pubsub.get_message(timeout=0.2)
            except redis.RedisError:
                time.sleep(0.2)
                continue
            if message:
                self.counts[json.loads(message["data"])["event_id"]] += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._pubsub.close()
        self._client.close()


def wait_for_results(pool: LocalPool, event_ids: list[str], timeout: float) -> dict[str, dict]:
    """Poll enrichment:<id> until every event has a result (riding out Redis outages)."""
    deadline = time.monotonic() + timeout
    found: dict[str, dict] = {}
    while time.monotonic() < deadline and len(found) < len(event_ids):
        for event_id in event_ids:
            if event_id in found:
                continue
            try:
                stored = pool.client.stored(event_id)
            except redis.RedisError:
                stored = None
            if stored is not None:
                found[event_id] = stored
        time.sleep(0.25)
    return found


def report(name: str, sent: int, results: dict[str, dict], announcements: Counter | None = None) -> None:
    """The figures each reliability test prints: sent, completed, lost, duplicated."""
    statuses = Counter(r["status"] for r in results.values())
    duplicated = sum(1 for n in (announcements or {}).values() if n > 1)
    print(f"\n[{name}] sent={sent} completed={len(results)} lost={sent - len(results)} "
          f"duplicated={duplicated} statuses={dict(statuses)}")
