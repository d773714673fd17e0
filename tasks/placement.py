"""Which device queue runs a model: affinity first, then free memory, then static configuration."""

from __future__ import annotations

from collections.abc import Mapping

from workers.state import WorkerState


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


def place_models(models: list[str], workers: list[WorkerState], static_queues: list[str],
                 estimated_bytes: Mapping[str, int], affinity: bool = True) -> dict[str, str]:
    """Queue per model for one event; models sent to one worker count against its free memory."""
    reserved: dict[str, int] = {}
    placement = {}
    for model in models:
        queue = choose_queue(model, workers, static_queues, reserved, affinity=affinity)
        reserved[queue] = reserved.get(queue, 0) + estimated_bytes.get(model, 0)
        placement[model] = queue
    return placement
