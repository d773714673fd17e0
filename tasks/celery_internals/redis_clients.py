"""One synchronous Redis client per kombu channel, instead of a new one for every acknowledgement and publish.

kombu's Redis transport (5.7) builds a fresh `redis.Redis` object in `Channel.conn_or_acquire()` each time a
worker acknowledges a message, records it as unacknowledged, or publishes a task or an event while its consumer
is polling. The object is cheap to use but not to build (its response-callback table is copied each time):
scripts/bench.py's profile of a device worker showed a seventh of its CPU spent constructing them. A
`redis.Redis` over a shared connection pool is safe to share between threads (each command borrows a
connection from the pool), so the channel keeps one and hands it out; a new pool (after a reconnect) gets a new
client. tests/unit/test_kombu_clients.py fails if kombu stops having the method this replaces.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

_ATTRIBUTE = "_model_zoo_sync_client"
_original_create_client = kombu_redis.Channel._create_client


def _create_client(self: Any, asynchronous: bool = False) -> Any:
    if asynchronous:
        return _original_create_client(self, asynchronous=True)
    client = self.__dict__.get(_ATTRIBUTE)
    if client is None or client.connection_pool is not self.pool:
        client = _original_create_client(self, asynchronous=False)
        self.__dict__[_ATTRIBUTE] = client
    return client


def install() -> None:
    """Make kombu's Redis channels reuse their synchronous client (idempotent)."""
    kombu_redis.Channel._create_client = _create_client


def installed() -> bool:
    return kombu_redis.Channel._create_client is _create_client
