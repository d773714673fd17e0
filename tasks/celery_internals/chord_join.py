"""A model task's record joins its chord even when Redis is restarting or full at the moment it finishes.

Celery's Redis backend adds a header task's result to its chord's join (`on_chord_part_return`, one Lua script)
after the task returns; when Redis refuses that script (down, or OOM at maxmemory) the exception escapes the task's
trace as an internal error, the message is acknowledged all the same (acks_late acknowledges failures), and the
record exists nowhere: the event waited for the sweeper and ended partial at its deadline (issue 28, the last
hangs of the Redis cases). Here the join is run again with backoff while Redis refuses it, as the router's and the
assembly's writes are (tasks/redis_retry.py, step `chord_join`). The script is idempotent per task (Celery keys
it on the task id and header index); should a retry find the callback already claimed by its own lost first try,
the sweeper assembles the event once every record has joined (tasks/sweeper.assemble_joined).
"""

from __future__ import annotations

from typing import Any

from celery.backends.redis import RedisBackend

from tasks.redis_retry import until_written

_original_on_chord_part_return = RedisBackend.on_chord_part_return


def _on_chord_part_return(self: Any, request: Any, state: Any, result: Any, propagate: Any = None,
                          **kwargs: Any) -> Any:
    return until_written("chord_join", lambda: _original_on_chord_part_return(
        self, request, state, result, propagate=propagate, **kwargs))


def install() -> None:
    """Retry a chord join Redis refuses (idempotent)."""
    RedisBackend.on_chord_part_return = _on_chord_part_return


def installed() -> bool:
    return RedisBackend.on_chord_part_return is _on_chord_part_return
