"""Writes Redis refuses (down, restarting, full) are tried again with backoff and counted; other errors are raised."""

from __future__ import annotations

import pytest
import redis

from tasks.metrics import REDIS_WRITE_RETRIES
from tasks.redis_retry import MAX_DELAY_SECONDS, refusal, until_written


def failing(errors: list[Exception], answer: str = "ok"):
    def write() -> str:
        if errors:
            raise errors.pop(0)
        return answer
    return write


def count(step: str, reason: str) -> float:
    return REDIS_WRITE_RETRIES.labels(step, reason)._value.get()


def test_a_full_or_unreachable_redis_is_waited_out_with_growing_pauses():
    pauses: list[float] = []
    errors = [redis.exceptions.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'."),
              redis.ConnectionError("Connection refused")] + [redis.TimeoutError("timeout")] * 8
    before_full, before_down = count("test-step", "full"), count("test-step", "unreachable")
    assert until_written("test-step", failing(errors), sleep=pauses.append) == "ok"
    assert pauses[:4] == [0.1, 0.2, 0.4, 0.8] and max(pauses) == MAX_DELAY_SECONDS
    assert count("test-step", "full") - before_full == 1 and count("test-step", "unreachable") - before_down == 9


def test_other_errors_are_not_retried():
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        until_written("test-step", failing([redis.ResponseError("WRONGTYPE Operation against a key")]),
                      sleep=lambda _: pytest.fail("slept"))
    with pytest.raises(ValueError):
        until_written("test-step", failing([ValueError("a bug")]), sleep=lambda _: None)


def test_giving_up_raises_the_refusal():
    clock = iter(range(1000))
    with pytest.raises(redis.ConnectionError):
        until_written("test-step", failing([redis.ConnectionError("down")] * 100), give_up_after=1.0,
                      sleep=lambda _: next(clock))


def test_an_oom_reply_inside_a_transaction_is_a_refusal():
    assert refusal(redis.exceptions.ExecAbortError("EXECABORT ... OOM command not allowed ...")) == "full"
    assert refusal(redis.exceptions.BusyLoadingError("LOADING Redis is loading the dataset")) == "unreachable"
    assert refusal(redis.ResponseError("ERR syntax error")) is None


def test_a_real_full_redis_is_refused_then_written_when_room_is_made(redis_client):
    """Against redis-server: at maxmemory with noeviction a SET is refused until memory is freed."""
    redis_client.set("ballast", b"x" * 2_000_000)
    used = redis_client.info("memory")["used_memory"]
    redis_client.config_set("maxmemory-policy", "noeviction")
    redis_client.config_set("maxmemory", str(used - 100_000))
    pauses: list[float] = []

    def free_some(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 3:
            redis_client.delete("ballast")  # DEL is allowed at maxmemory: room is made

    try:
        assert until_written("test-step", lambda: redis_client.set("frame:x", b"y" * 10_000), sleep=free_some)
    finally:
        redis_client.config_set("maxmemory", "0")
    assert len(pauses) == 3 and redis_client.strlen("frame:x") == 10_000
