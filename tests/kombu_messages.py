"""kombu helpers the taken-message tests share: a queue named like its exchange and routing key (as the pool's
queues are), JSON bodies published to it, and one look for messages that may find none."""

from __future__ import annotations

from kombu import Connection, Exchange, Queue


def direct_queue(name: str) -> Queue:
    return Queue(name, Exchange(name), routing_key=name)


def publish(connection: Connection, queue: str, bodies: list[dict]) -> None:
    target = direct_queue(queue)
    with connection.Producer() as producer:
        for body in bodies:
            producer.publish(body, exchange=target.exchange, routing_key=queue, declare=[target], serializer="json")


def drain_once(connection: Connection, timeout: float) -> bool:
    """Deliver what arrives within `timeout` to the connection's consumers; False when nothing did."""
    try:
        connection.drain_events(timeout=timeout)
    except TimeoutError:
        return False
    return True
