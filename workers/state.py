"""What each device worker publishes about itself in Redis (its models and memory), and reading it back."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

WORKER_STATE_PREFIX = "workers:state:"
WORKER_INDEX = "workers:index"  # a set of node names, so the router never scans the keyspace for states
DEVICE_QUEUES_KEY = "workers:queues"  # every device queue a worker has consumed: the rescue looks for dead ones here


def publish_state(client: redis.Redis, worker: str, state: str, ttl_seconds: int) -> None:
    """SET workers:state:<worker> with a TTL (a dead worker drops out by itself) and list it in the index."""
    with client.pipeline(transaction=False) as pipe:
        pipe.set(WORKER_STATE_PREFIX + worker, state, ex=ttl_seconds).sadd(WORKER_INDEX, worker).execute()


def withdraw_state(client: redis.Redis, worker: str) -> None:
    """A worker stopping on purpose leaves the index at once rather than when its TTL runs out."""
    with client.pipeline(transaction=False) as pipe:
        pipe.delete(WORKER_STATE_PREFIX + worker).srem(WORKER_INDEX, worker).execute()


def register_device_queue(client: redis.Redis, queue: str) -> None:
    """Name the queue among the pool's device queues (once, when its worker starts)."""
    client.sadd(DEVICE_QUEUES_KEY, queue)


def device_queues(client: redis.Redis) -> set[str]:
    return {q.decode() if isinstance(q, bytes) else q for q in client.smembers(DEVICE_QUEUES_KEY)}


def queue_backlog(client: redis.Redis, queues: list[str]) -> dict[str, int]:
    """Messages waiting in each queue (LLEN), in one round trip."""
    if not queues:
        return {}
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.llen(queue)
        return dict(zip(queues, pipe.execute()))


@dataclass(frozen=True)
class WorkerState:
    """What a device worker last published about itself."""

    worker: str
    queue: str
    device: str
    models: tuple[str, ...]
    used_bytes: int
    free_bytes: int
    budget_bytes: int
    updated_at: float
    in_flight: int = 0  # model tasks it is running or holds (published at most a second late)
    task_ms: float = 0.0  # its recent model task time (load and inference), a moving average
    load_ms: tuple[tuple[str, float], ...] = ()  # what each model it holds took to load

    @classmethod
    def from_json(cls, raw: bytes | str) -> WorkerState:
        data = json.loads(raw)
        return cls(
            worker=data["worker"], queue=data["queue"], device=data.get("device", "cpu"),
            models=tuple(m["name"] for m in data.get("models", [])),
            used_bytes=int(data.get("used_bytes", 0)), free_bytes=int(data.get("free_bytes", 0)),
            budget_bytes=int(data.get("budget_bytes", 0)), updated_at=float(data.get("updated_at", 0)),
            in_flight=int(data.get("in_flight", 0)), task_ms=float(data.get("task_ms", 0.0)),
            load_ms=tuple((m["name"], float(m.get("load_ms") or 0.0)) for m in data.get("models", [])),
        )


def live_workers(client: redis.Redis, max_age_seconds: float, now: float | None = None) -> list[WorkerState]:
    """Device workers whose published state is fresher than max_age_seconds.

    Two round trips whatever the size of the keyspace (SMEMBERS of the index, MGET of the states); names
    whose state has expired are dropped from the index on the way.
    """
    now = time.time() if now is None else now
    names = sorted(n.decode() if isinstance(n, bytes) else n for n in client.smembers(WORKER_INDEX))
    raws = client.mget([WORKER_STATE_PREFIX + name for name in names]) if names else []
    gone = [name for name, raw in zip(names, raws) if raw is None]
    if gone:
        client.srem(WORKER_INDEX, *gone)
    states = []
    for raw in raws:
        if raw is None:
            continue
        state = WorkerState.from_json(raw)
        if now - state.updated_at <= max_age_seconds:
            states.append(state)
    return states
