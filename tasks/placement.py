"""Which device queue runs a model: affinity first, then free memory, then static configuration."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

WORKER_STATE_PREFIX = "workers:state:"


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

    @classmethod
    def from_json(cls, raw: bytes | str) -> "WorkerState":
        data = json.loads(raw)
        return cls(
            worker=data["worker"], queue=data["queue"], device=data.get("device", "cpu"),
            models=tuple(m["name"] for m in data.get("models", [])),
            used_bytes=int(data.get("used_bytes", 0)), free_bytes=int(data.get("free_bytes", 0)),
            budget_bytes=int(data.get("budget_bytes", 0)), updated_at=float(data.get("updated_at", 0)),
        )


def choose_queue(model: str, workers: list[WorkerState], static_queues: list[str], reserved: dict[str, int] | None = None,
                 affinity: bool = True) -> str:
    """Pick the device queue for one model.

    1. a live worker that already holds the model (most free memory wins ties), unless affinity is off;
    2. else the worker with the most free memory, less what this event already sent it (`reserved`);
    3. else static placement: the model name hashed over the configured queues.
    """
    reserved = reserved or {}
    holders = [w for w in workers if model in w.models] if affinity else []
    if holders:
        return max(holders, key=lambda w: (w.free_bytes - reserved.get(w.queue, 0), w.queue)).queue
    if workers:
        return max(workers, key=lambda w: (w.free_bytes - reserved.get(w.queue, 0), w.queue)).queue
    if not static_queues:
        raise ValueError("no device worker has reported and DEVICE_QUEUES is empty")
    return static_queues[sum(model.encode()) % len(static_queues)]


def live_workers(client: redis.Redis, max_age_seconds: float, now: float | None = None) -> list[WorkerState]:
    """Device workers whose published state is fresher than max_age_seconds."""
    now = time.time() if now is None else now
    keys = list(client.scan_iter(match=f"{WORKER_STATE_PREFIX}*", count=100))
    states = []
    for raw in client.mget(keys) if keys else []:
        if raw is None:
            continue
        state = WorkerState.from_json(raw)
        if now - state.updated_at <= max_age_seconds:
            states.append(state)
    return states
