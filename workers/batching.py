"""Per-model micro-batching: requests for one model queue up, one runner thread per model serves them in batches.

A task thread calls `MicroBatcher.submit(model, item, timeout)`. The item joins its model's queue; the model's
runner thread (started on the model's first request) takes up to `max_size` queued items as one batch, runs
it in one call and hands each caller its own answer. With `max_wait` 0 (the default) a request for an idle
model runs at once; while a batch runs, the next one fills, so batches grow with the load and latency does not
pile up behind idle waits. A positive `max_wait` holds a batch that long for company.

A caller waits at most `timeout` seconds (the soft time limit): then it gets InferenceTimeout and its item is
dropped if it has not started yet. A call already running cannot be interrupted (it is a thread); the device
worker's watchdog ends the process if it runs past the hard limit (workers/watchdog.py).

With `inline=True` (a prefork child, which runs one task at a time) there are no runner threads: submit runs
the call in the caller's thread, so Celery's own soft limit interrupts the model call itself.

A batch that fails as a whole is retried one item at a time (`run_each`), so one bad input costs only its own
request. An item's answer may be an exception; `submit` raises it in that item's thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from model_cache.footprint import is_out_of_memory

Item = TypeVar("Item")

Outcome = Any  # a result, or the exception raised for that item


class InferenceTimeout(Exception):
    """A request waited longer than its timeout (the soft time limit) for its model's answer."""


@dataclass(frozen=True)
class BatchStats:
    """How the batches went: batches run, items served, the largest batch."""

    batches: int
    items: int
    largest: int


class _Request(Generic[Item]):
    """One queued item and its answer slot: the runner fills it and releases `ready`, which its caller waits on.

    A bare lock held until the answer is in (instead of a Future, whose every wait builds a Condition and a
    waiter lock): one hand-off each way per request, the cheapest Python has.
    """

    __slots__ = ("item", "ready", "state", "outcome")

    def __init__(self, item: Item):
        self.item = item
        self.ready = threading.Lock()
        self.ready.acquire()
        self.state = "pending"  # -> "running" (taken into a batch) or "cancelled" (its caller gave up first)
        self.outcome: Any = None

    def answer(self, outcome: Any) -> None:
        self.outcome = outcome
        self.ready.release()


class MicroBatcher(Generic[Item]):
    """Queues requests per key and runs them in batches of at most max_size, one batch per key at a time."""

    def __init__(self, run_batch: Callable[[Hashable, list[Item]], Sequence[Outcome]], max_size: int,
                 max_wait: float = 0.0, inline: bool = False):
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, not {max_size}")
        if max_wait < 0:
            raise ValueError(f"max_wait must not be negative, not {max_wait}")
        self.run_batch = run_batch
        self.max_size = max_size
        self.max_wait = max_wait
        self.inline = inline
        # One lock for the books; each key's runner waits on its own condition over it, so a request wakes only
        # its own model's runner (one shared condition woke every runner on every request: with seven models, seven
        # thread wake-ups per request, 6% of a device worker's CPU under scripts/bench.py --noop).
        self._lock = threading.RLock()
        self._wakeups: dict[Hashable, threading.Condition] = {}
        self._queues: dict[Hashable, deque[_Request[Item]]] = {}
        self._runners: dict[Hashable, threading.Thread] = {}
        self._inline_locks: dict[Hashable, threading.Lock] = {}
        self._batches = 0
        self._items = 0
        self._largest = 0

    def submit(self, key: Hashable, item: Item, timeout: float | None = None) -> Any:
        """Run item with whatever else is queued for key; return (or raise) its own outcome."""
        if self.inline:
            return self._run_inline(key, item)
        request: _Request[Item] = _Request(item)
        with self._lock:
            self._queues.setdefault(key, deque()).append(request)
            wakeup = self._wakeups.setdefault(key, threading.Condition(self._lock))
            if key not in self._runners:
                self._runners[key] = threading.Thread(target=self._serve, args=(key,), daemon=True,
                                                      name=f"model-runner-{key}")
                self._runners[key].start()
            wakeup.notify()
        if not request.ready.acquire(timeout=-1 if timeout is None else timeout):
            with self._lock:
                if request.state == "pending":
                    request.state = "cancelled"  # not started yet: the runner skips it
            raise InferenceTimeout(f"no answer from {key} within {timeout:g} s")
        outcome = request.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def stats(self) -> BatchStats:
        with self._lock:
            return BatchStats(self._batches, self._items, self._largest)

    def _run_inline(self, key: Hashable, item: Item) -> Any:
        with self._lock:
            lock = self._inline_locks.setdefault(key, threading.Lock())
        with lock:  # one call per model at a time (ultralytics predictors are not thread-safe)
            self._count([item])
            outcome = self._call(key, [item])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _serve(self, key: Hashable) -> None:
        """The runner of one key: forever take the next batch of live requests and answer them."""
        while True:
            batch = self._next_batch(key)
            outcomes = self._call(key, [request.item for request in batch])
            for request, outcome in zip(batch, outcomes):
                request.answer(outcome)

    def _next_batch(self, key: Hashable) -> list[_Request[Item]]:
        queue = self._queues[key]
        wakeup = self._wakeups[key]
        with wakeup:
            while not queue:
                wakeup.wait()
            if self.max_wait > 0 and len(queue) < self.max_size:
                deadline = time.monotonic() + self.max_wait
                while len(queue) < self.max_size and (remaining := deadline - time.monotonic()) > 0:
                    wakeup.wait(remaining)
            batch = []
            while queue and len(batch) < self.max_size:
                request = queue.popleft()
                if request.state == "pending":  # else its caller gave up
                    request.state = "running"
                    batch.append(request)
            self._count(batch)
        return batch or self._next_batch(key)

    def _count(self, items: Sequence[Any]) -> None:
        with self._lock:
            self._batches += 1 if items else 0
            self._items += len(items)
            self._largest = max(self._largest, len(items))

    def _call(self, key: Hashable, items: list[Item]) -> list[Outcome]:
        try:
            outcomes = list(self.run_batch(key, items))
            if len(outcomes) != len(items):
                raise RuntimeError(f"a batch of {len(items)} gave {len(outcomes)} answers")
            return outcomes
        except BaseException as exc:  # noqa: BLE001 - every waiting caller must get an answer
            return [exc] * len(items)


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
