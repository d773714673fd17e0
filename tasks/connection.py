"""This process's Redis client and stores for the pool's own keys (frames, results, ledger, gallery, states)."""

from __future__ import annotations

from functools import lru_cache

import redis

from tasks.results import ResultStore
from workers.settings import get_settings


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    """One client per process (redis-py's pool reconnects by itself after a fork)."""
    return redis.Redis.from_url(
        get_settings().broker_url, socket_keepalive=True, health_check_interval=10,
        retry_on_timeout=True, socket_connect_timeout=5,
    )


def result_store() -> ResultStore:
    """enrichment:<event_id> with RESULT_TTL_SECONDS, announced on the stream capped near COMPLETION_STREAM_MAXLEN."""
    settings = get_settings()
    return ResultStore(redis_client(), settings.result_ttl_seconds, settings.completion_stream_maxlen)
