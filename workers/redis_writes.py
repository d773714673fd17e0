"""Writes that join a caller's Redis pipeline, or run in one of their own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis


@contextmanager
def queued(client: redis.Redis, pipe: redis.client.Pipeline | None,
           transaction: bool = True) -> Iterator[redis.client.Pipeline]:
    """`pipe` when the caller gives one (the caller executes it, with its other writes, in one round trip);
    else a pipeline of the store's own, executed when the block ends."""
    if pipe is not None:
        yield pipe
        return
    with client.pipeline(transaction=transaction) as own:
        yield own
        own.execute()
