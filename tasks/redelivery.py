"""Giving a dead device worker's tasks back to its queue at once, instead of after the visibility timeout.

kombu's Redis transport keeps every message a worker has taken in the `unacked` hash until it is acknowledged;
a worker that dies without a warm shutdown leaves them there, and they return only when VISIBILITY_TIMEOUT_SECONDS
has passed (an hour by default). A device queue (gpu.N, cpu.N) has exactly one consumer, so whatever is unacked
for it when its worker starts was taken by that worker's dead predecessor: it is restored before consuming starts.
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger(__name__)


def unacked_for(channel: Any, queue: str) -> list[str]:
    """Delivery tags of the unacknowledged messages that were routed to `queue`."""
    tags = []
    for tag, raw in channel.client.hgetall(channel.unacked_key).items():
        try:
            _, exchange, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        if queue in (routing_key, exchange):
            tags.append(tag.decode() if isinstance(tag, bytes) else tag)
    return tags


def restore_unacked(connection: Any, queue: str) -> list[str]:
    """Put the unacknowledged messages of `queue` back at its head; returns their delivery tags."""
    channel = connection.default_channel
    tags = unacked_for(channel, queue)
    for tag in tags:
        channel.qos.restore_by_tag(tag, leftmost=True)
    if tags:
        log.warning("restored %d task(s) a previous worker of %s took and never acknowledged", len(tags), queue)
    return tags
