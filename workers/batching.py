"""Per-model micro-batching for a device worker whose pool runs several model tasks at once (threads).

Each task thread calls `MicroBatcher.submit(model, item)`. The first thread to ask for a model while no
batch of it is open becomes that batch's leader: it waits until the batch holds `max_size` items, or
`max_wait` seconds have passed and the model is not busy with an earlier batch; then it closes the batch,
runs it in one call and hands each thread its own answer. Threads asking for the same model meanwhile
join the open batch and wait for their answer. One batch per model runs at a time.

A batch that fails as a whole is retried one item at a time (`run_each`), so one bad input costs only its
own request. An item's answer may be an exception; `submit` raises it in that item's thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Hashable, Sequence, TypeVar

from model_cache.footprint import is_out_of_memory

Item = TypeVar("Item")

Outcome = Any  # a result, or the exception raised for that item


@dataclass
class _Batch(Generic[Item]):
    items: list[Item] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    outcomes: list[Outcome] = field(default_factory=list)


@dataclass(frozen=True)
class BatchStats:
    """How the batches went: batches run, items served, the largest batch."""

    batches: int
    items: int
    largest: int


class MicroBatcher(Generic[Item]):
    """Groups concurrent submissions per key into batches of at most max_size.

    A batch closes when it is full, or when it has waited max_wait and no batch of its key is running.
    So a lone request waits max_wait at most, and under load the next batch of a model fills up while
    the current one runs: batch size grows with the load, latency does not pile up behind idle waits.
    """

    def __init__(self, run_batch: Callable[[Hashable, list[Item]], Sequence[Outcome]], max_size: int,
                 max_wait: float):
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, not {max_size}")
        if max_wait < 0:
            raise ValueError(f"max_wait must not be negative, not {max_wait}")
        self.run_batch = run_batch
        self.max_size = max_size
        self.max_wait = max_wait
        self._changed = threading.Condition()
        self._open: dict[Hashable, _Batch[Item]] = {}
        self._running: set[Hashable] = set()
        self._batches = 0
        self._items = 0
        self._largest = 0

    def submit(self, key: Hashable, item: Item) -> Any:
        """Run item with whatever else arrives for key meanwhile; return (or raise) its own outcome."""
        with self._changed:
            batch = self._open.get(key)
            leader = batch is None
            if leader:
                batch = self._open[key] = _Batch()
            index = len(batch.items)
            batch.items.append(item)
            if len(batch.items) >= self.max_size:
                del self._open[key]  # full: nobody else joins; its leader is told below
            self._changed.notify_all()
        if leader:
            self._lead(key, batch)
        else:
            batch.done.wait()
        outcome = batch.outcomes[index]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def stats(self) -> BatchStats:
        with self._changed:
            return BatchStats(self._batches, self._items, self._largest)

    def _lead(self, key: Hashable, batch: _Batch[Item]) -> None:
        deadline = time.monotonic() + self.max_wait
        with self._changed:
            while len(batch.items) < self.max_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0 and key not in self._running:
                    break
                self._changed.wait(remaining if remaining > 0 else None)
            if self._open.get(key) is batch:
                del self._open[key]
            while key in self._running:  # a full batch still runs after the one before it
                self._changed.wait()
            self._running.add(key)
            self._batches += 1
            self._items += len(batch.items)
            self._largest = max(self._largest, len(batch.items))
        try:
            outcomes = list(self.run_batch(key, batch.items))
            if len(outcomes) != len(batch.items):
                raise RuntimeError(f"a batch of {len(batch.items)} gave {len(outcomes)} answers")
        except BaseException as exc:  # noqa: BLE001 - every waiting thread must get an answer
            outcomes = [exc] * len(batch.items)
        finally:
            with self._changed:
                self._running.discard(key)
                self._changed.notify_all()
        batch.outcomes = outcomes
        batch.done.set()


def run_each(infer: Callable[[Item], Any], items: Sequence[Item]) -> list[Outcome]:
    """One call per item; an item's exception becomes its outcome instead of failing the rest.

    Running out of memory is raised, not kept: the model cache evicts and retries the whole batch once.
    """
    outcomes: list[Outcome] = []
    for item in items:
        try:
            outcomes.append(infer(item))
        except Exception as exc:  # noqa: BLE001 - handed back to that item's caller
            if is_out_of_memory(exc):
                raise
            outcomes.append(exc)
    return outcomes


def infer_many(wrapper: Any, items: Sequence[Any]) -> list[Outcome]:
    """A wrapper's answers for items: one infer_batch() when its family declares `batchable`, else infer() per item.

    When infer_batch fails as a whole (one bad crop, or an item the family skips), every item is retried on
    its own so the others still get their answers and the bad one gets its own error.
    """
    if not getattr(wrapper, "batchable", False) or len(items) == 1:
        return run_each(wrapper.infer, items)
    try:
        outcomes = list(wrapper.infer_batch(list(items)))
    except Exception as exc:  # noqa: BLE001 - fall back to one at a time
        if is_out_of_memory(exc):
            raise
        return run_each(wrapper.infer, items)
    if len(outcomes) != len(items):
        raise RuntimeError(f"{type(wrapper).__name__}.infer_batch gave {len(outcomes)} answers for {len(items)}")
    return outcomes
