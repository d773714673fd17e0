"""Which device queue runs a model: the live worker where it would finish soonest, else static configuration.

A worker's expected wait is its backlog (the messages waiting in its queue, what it is running, and what this event
has already sent it) times its recent model task time; a worker that does not hold the model adds the cost of
loading it (the load time measured where it was loaded, else LOAD_SECONDS_UNKNOWN). So a worker holding the model
wins until it is busier than a load costs, and then a second worker (another host, the same models) is used; ties go
to the holder, then to the most free memory. A dead worker drops out within three heartbeats (its state expires).
"""

from __future__ import annotations

from collections.abc import Mapping

from workers.state import WorkerState

LOAD_SECONDS_UNKNOWN = 1.0  # a model no live worker has loaded yet: what a load costs, about, on a GPU
TASK_SECONDS_UNKNOWN = 0.05  # a worker that has not run a task yet


def load_seconds(model: str, workers: list[WorkerState]) -> float:
    """What loading `model` costs: the slowest load measured by a live worker that holds it, else a default."""
    measured = [ms for w in workers for name, ms in w.load_ms if name == model and ms > 0]
    return max(measured) / 1000 if measured else LOAD_SECONDS_UNKNOWN


def expected_seconds(model: str, worker: WorkerState, workers: list[WorkerState], backlog: Mapping[str, int],
                     reserved: Mapping[str, int], affinity: bool = True) -> float:
    """How long until `worker` would have run `model`: its backlog's time, plus a load unless it holds the model."""
    waiting = backlog.get(worker.queue, 0) + worker.in_flight + reserved.get(worker.queue, 0)
    task_seconds = worker.task_ms / 1000 if worker.task_ms > 0 else TASK_SECONDS_UNKNOWN
    load = 0.0 if (model in worker.models or not affinity) else load_seconds(model, workers)
    return waiting * task_seconds + load


def choose_queue(model: str, workers: list[WorkerState], static_queues: list[str],
                 reserved: Mapping[str, int] | None = None, affinity: bool = True,
                 backlog: Mapping[str, int] | None = None, reserved_bytes: Mapping[str, int] | None = None) -> str:
    """Pick the device queue for one model.

    1. the live worker with the shortest expected wait (backlog and a load; see the module), the holder winning
       ties, then the most free memory less what this event already sent it (`reserved_bytes`);
    2. else static placement: the model name hashed over the configured queues.
    """
    reserved, backlog, reserved_bytes = reserved or {}, backlog or {}, reserved_bytes or {}
    if workers:
        def rank(w: WorkerState) -> tuple:
            return (round(expected_seconds(model, w, workers, backlog, reserved, affinity), 6),
                    not (affinity and model in w.models), -(w.free_bytes - reserved_bytes.get(w.queue, 0)), w.queue)

        return min(workers, key=rank).queue
    if not static_queues:
        raise ValueError("no device worker has reported and DEVICE_QUEUES is empty")
    return static_queues[sum(model.encode()) % len(static_queues)]


def place_models(models: list[str], workers: list[WorkerState], static_queues: list[str],
                 estimated_bytes: Mapping[str, int], affinity: bool = True,
                 backlog: Mapping[str, int] | None = None) -> dict[str, str]:
    """Queue per model for one event; each model sent to a worker adds to its backlog and counts against its memory."""
    reserved: dict[str, int] = {}
    reserved_bytes: dict[str, int] = {}
    placement = {}
    for model in models:
        queue = choose_queue(model, workers, static_queues, reserved, affinity, backlog, reserved_bytes)
        reserved[queue] = reserved.get(queue, 0) + 1
        reserved_bytes[queue] = reserved_bytes.get(queue, 0) + estimated_bytes.get(model, 0)
        placement[model] = queue
    return placement
