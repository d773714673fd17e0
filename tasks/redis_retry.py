"""Redis writes that ride out a restart or a full Redis: retried with backoff until they land, and counted.

A restarted Redis refuses connections for a few seconds (then answers LOADING while it reads its AOF); a Redis at
maxmemory with `noeviction` answers OOM to every write. Either way the write has not happened and nothing is lost
by trying again: the router's and the assembly's steps are idempotent (the same keys, the same ids), so a step is
simply run again after a pause that doubles up to MAX_DELAY_SECONDS. Each retry counts in
`model_zoo_redis_write_retries_total{step, reason}` (reason `full` or `unreachable`) and is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from kombu.exceptions import OperationalError

from tasks.metrics import REDIS_WRITE_RETRIES

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY_SECONDS = 0.1
MAX_DELAY_SECONDS = 5.0
# Redis could not take the write: down or restarting (kombu wraps a publish's connection errors in
# OperationalError), or full (OOM under noeviction). Anything else is a real error and is raised.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OperationalError, ConnectionError)
FULL = (redis.exceptions.OutOfMemoryError,)
# the reply's text, when another error carries it (EXECABORT of a transaction; kombu's OperationalError of a publish,
# where redis-py has already taken the "OOM" prefix off)
FULL_SIGNS = ("OOM command not allowed", "used memory > 'maxmemory'")


def refusal(exc: BaseException) -> str | None:
    """'full' or 'unreachable' when `exc` says Redis did not take a write (worth retrying), else None."""
    if isinstance(exc, FULL) or any(sign in str(exc) for sign in FULL_SIGNS):
        return "full"
    if isinstance(exc, UNREACHABLE):
        return "unreachable"
    return None


def until_written(step: str, write: Callable[[], T], give_up_after: float | None = None,
                  sleep: Callable[[float], None] = time.sleep, full_for: float | None = None) -> T:
    """`write()`, run again with backoff while Redis refuses it; raises only past `give_up_after` seconds
    (never, when None), once Redis has answered "full" for `full_for` seconds (a caller that answers the event
    itself rather than wait for room), or on an error that is not a refusal."""
    started = time.monotonic()
    delay = FIRST_DELAY_SECONDS
    attempts = 0
    while True:
        try:
            return write()
        except Exception as exc:
            reason = refusal(exc)
            if reason is None:
                raise
            attempts += 1
            REDIS_WRITE_RETRIES.labels(step, reason).inc()
            if reason == "full" and full_for is not None and time.monotonic() - started + delay > full_for:
                log.warning("%s: Redis is still full after %d attempts (%s)", step, attempts, str(exc)[:200])
                raise
            if give_up_after is not None and time.monotonic() - started + delay > give_up_after:
                log.error("%s: Redis still refuses the write after %d attempts (%s): giving up", step, attempts, exc)
                raise
            if attempts == 1 or attempts % 10 == 0:
                log.warning("%s: Redis is %s (%s); trying again in %.1f s (attempt %d)", step, reason,
                            str(exc)[:200], delay, attempts)
            sleep(delay)
            delay = min(delay * 2, MAX_DELAY_SECONDS)
