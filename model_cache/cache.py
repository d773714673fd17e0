"""A process-local model cache: models weighed by priority, demand and size, charged in bytes against one budget.

Modelled on Ray Serve's model multiplexer (an OrderedDict in LRU order, loads serialised under one lock
with a second look once inside), and extended with bytes instead of counts, a weighted choice of victim,
measured footprints, idle release and one retry after running out of memory.

Rules:
- A model is charged its estimate until a load has been measured, then its measurement (remembered
  across unload and reload in this process). A model whose measurement turns out not to fit is unloaded
  again and skipped.
- A model in use (inside using() or run_with_oom_retry()) is never evicted to make room, for idleness or
  after running out of memory (only the explicit evict() and clear() do not wait for it). That is the only
  wall: any other model, resident or not, may be evicted to make room for any request.
- Room is made by evicting the models least worth keeping: keep value = priority weight (LOW 1 ... RESIDENT 5)
  x demand (the model's requests, each fading with half_life_seconds) / bytes charged, least recently used
  first among equals. So a big, rarely asked, unimportant model goes first, and priority is a weight, not a
  rank: a low priority is never starved. A victim that a later, bigger one made needless is spared.
- Within one event the planner asks for the more important models first: a model asked for in the last
  shield_seconds that outranks the one being loaded is evicted last, only when the others cannot make
  room, so the event's less important models do not push out its more important ones. Resident models
  are not shielded; they keep their place by weight (at small budgets shielding them starves the rest of
  the event).
- A request is skipped (ModelSkipped) only when the model cannot fit at all: it is bigger than the budget,
  or models in use hold the rest.
- Resident models (florence, clip) are never released for idleness; others are after idle_seconds unused.
- Out of memory while loading, or inside run_with_oom_retry(): every other model not in use is unloaded
  (the accounting was wrong, so no byte count is trusted), memory is released, and the work is retried
  once; a second failure raises ModelOutOfMemory.
- One lock (a Condition) guards the books. Loads and unloads run outside it, one at a time, so an
  allocator delta measures one model; hits and snapshot() are answered meanwhile, and a second get() of
  a model being loaded waits for that load instead of starting another.
- on_change() and the observer run outside the lock, after every load and eviction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from model_cache.errors import ModelOutOfMemory, ModelSkipped
from model_cache.footprint import Measure, is_out_of_memory, measure_for, release_memory
from model_cache.spec import ModelSpec, Priority
from model_cache.stats import CacheObserver, CacheStats

log = logging.getLogger(__name__)

T = TypeVar("T")
MB = 1024 * 1024
GB = 1024 * MB


def _mb(nbytes: int) -> str:
    return f"{nbytes / MB:.1f} MB"


@dataclass
class CacheResult:
    """What get() hands back: the loaded object, whether it was already there, and what made room for it."""

    model: Any
    hit: bool
    load_ms: float = 0.0
    evicted: list[str] = field(default_factory=list)


@dataclass
class _Held:
    """One loaded model and what the cache knows about it."""

    spec: ModelSpec
    model: Any
    nbytes: int  # charged to the budget: the measurement when there is one, else the estimate
    load_ms: float
    last_used: float
    hits: int = 0
    in_use: int = 0  # run_with_oom_retry()/using() calls running with it: never evicted meanwhile


class ModelCache:
    """Loads models on demand and keeps as many as fit in budget_bytes."""

    def __init__(
        self,
        budget_bytes: int,
        *,
        idle_seconds: float | None = None,
        half_life_seconds: float = 1800.0,
        shield_seconds: float = 5.0,
        device: str = "cpu",
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[], None] | None = None,
        observer: CacheObserver | None = None,
        measure: Measure | None = None,
        release: Callable[[], None] = release_memory,
    ):
        self.budget_bytes = int(budget_bytes)
        self.idle_seconds = idle_seconds
        self.half_life_seconds = half_life_seconds  # how fast a request stops counting as demand
        self.shield_seconds = shield_seconds  # how long an event's more important models are shielded
        self.device = device
        self.stats = CacheStats()
        self._clock = clock
        self._on_change = on_change
        self._observer = observer or CacheObserver()
        self._measure = measure or measure_for(device)
        self._release = release
        self._held: OrderedDict[str, _Held] = OrderedDict()  # least recently used first
        self._measured: dict[str, int] = {}  # name -> last measured bytes, kept after unload
        self._demand: dict[str, tuple[float, float]] = {}  # name -> (decayed request count, as of), kept after unload
        self._lock = threading.Condition(threading.RLock())
        self._in_flight: str | None = None  # the load or unload running outside the lock, in words
        self._loading: str | None = None  # the model being loaded (published early, as Ray does, for routing)
        self._reserved = 0  # bytes promised to the load in flight

    # -- asking for models ---------------------------------------------------------------------------
    def get(self, spec: ModelSpec) -> CacheResult:
        """The loaded model, loading it (and evicting to make room) on a miss; raises ModelSkipped."""
        return self._get(spec, pin=False)

    @contextmanager
    def using(self, spec: ModelSpec) -> Iterator[Any]:
        """The loaded model, protected from eviction until the block ends."""
        result = self._get(spec, pin=True, count=False)
        try:
            yield result.model
        finally:
            self._unpin(spec.name)

    def run_with_oom_retry(self, spec: ModelSpec, fn: Callable[[Any], T]) -> T:
        """fn(model) with the model in use; on out-of-memory evict every other model not in use and retry once.

        A model that get() already returned is not counted as a second request. Raises ModelOutOfMemory
        when the retry runs out of memory too.
        """
        with self.using(spec) as model:
            return self._retry_once_after_oom(spec, "running", lambda: fn(model), claimed=False)

    # -- letting go ----------------------------------------------------------------------------------
    def release_idle(self) -> list[str]:
        """Evict non-resident models unused for longer than idle_seconds; returns their names.

        Does nothing (rather than wait) while a load or unload is in flight: it runs from a heartbeat.
        """
        if self.idle_seconds is None:
            return []
        with self._lock:
            if self._in_flight is not None:
                return []
            now = self._clock()
            idle = [
                h for h in self._held.values()
                if h.in_use == 0 and h.spec.priority != Priority.RESIDENT and now - h.last_used > self.idle_seconds
            ]
            if not idle:
                return []
            self._take(idle, "idle release")
        return self._unload(idle, "idle")

    def evict(self, name: str) -> bool:
        """Unload one model now, whatever its priority and even in use (a command); False when it was not loaded."""
        with self._lock:
            self._wait_until_idle()
            held = self._held.get(name)
            if held is None:
                return False
            self._take([held], f"evicting {name}")
        self._unload([held], "explicit")
        return True

    def clear(self) -> None:
        """Unload everything, resident models included (worker shutdown)."""
        with self._lock:
            self._wait_until_idle()
            everything = list(self._held.values())
            if not everything:
                return
            self._take(everything, "clearing")
        self._unload(everything, "clear")

    # -- looking at it -------------------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._held

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    @property
    def used_bytes(self) -> int:
        """Bytes charged by loaded models plus the load in flight."""
        with self._lock:
            return sum(h.nbytes for h in self._held.values()) + self._reserved

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state for publishing: budget, usage, models (least recently used first), counters.

        Each model shows the bytes it is charged beside its estimate and its measurement (None until one
        load measured it); the totals add these up over the loaded models, the measured total over those
        measured (`unmeasured` names the rest, charged their estimate).
        """
        with self._lock:
            now = self._clock()
            used = self.used_bytes
            return {
                "device": self.device,
                "budget_bytes": self.budget_bytes,
                "used_bytes": used,
                "free_bytes": self.budget_bytes - used,
                "estimated_bytes": sum(h.spec.estimated_bytes for h in self._held.values()),
                "measured_bytes": sum(self._measured.get(name, 0) for name in self._held),
                "unmeasured": [name for name in self._held if name not in self._measured],
                "idle_seconds": self.idle_seconds,
                "loading": self._loading,
                "models": [
                    {
                        "name": name,
                        "priority": h.spec.priority.name,
                        "bytes": h.nbytes,
                        "estimated_bytes": h.spec.estimated_bytes,
                        "measured_bytes": self._measured.get(name),
                        "demand": round(self._demand_now(name, now), 3),
                        "last_used_age_s": round(now - h.last_used, 3),
                        "load_ms": round(h.load_ms, 2),
                        "hits": h.hits,
                        "in_use": h.in_use,
                    }
                    for name, h in self._held.items()
                ],
                "stats": self.stats.as_dict(),
            }

    # -- the work ------------------------------------------------------------------------------------
    def _get(self, spec: ModelSpec, *, pin: bool, count: bool = True) -> CacheResult:
        name = spec.name
        with self._lock:
            held = self._second_look(name)
            if held is not None:
                return self._hit(held, pin=pin, count=count)
            self.stats.misses += 1
            self._count_demand(name)
            planned = self._measured.get(name, spec.estimated_bytes)
            victims = self._room_for(spec, planned)
            if victims is None:
                reason = self._skip_reason(spec, planned)
                self.stats.skips += 1
            else:
                self._take(victims, f"loading {name}")
                self._loading, self._reserved = name, planned
        self._notify("on_miss", name)
        if victims is None:
            self._notify("on_skip", name, reason)
            raise ModelSkipped(reason)

        try:  # this thread now holds the in-flight claim: always hand it back
            evicted = self._unload(victims, "room", claimed=True)
            started = time.perf_counter()
            try:
                model, measured = self._load(spec, evicted)
            except BaseException:
                with self._lock:
                    self.stats.load_failures += 1
                raise
            load_ms = (time.perf_counter() - started) * 1000
            nbytes, refusal = self._admit(spec, model, measured, load_ms, evicted, pin=pin)
            if refusal is not None:
                doomed = [_Held(spec, model, nbytes, load_ms, 0.0)]
                del model  # so that unloading drops the last reference
                self._unload(doomed, None, claimed=True)
                self._notify("on_skip", name, refusal)
                raise ModelSkipped(refusal)
        finally:
            with self._lock:
                self._finish()
        log.info("loaded model %s in %.0f ms, %s", name, load_ms, _mb(nbytes))
        self._notify("on_load", name, load_ms / 1000, nbytes)
        self._changed()
        return CacheResult(model=model, hit=False, load_ms=load_ms, evicted=evicted)

    def _hit(self, held: _Held, *, pin: bool, count: bool) -> CacheResult:
        name = held.spec.name
        self._held.move_to_end(name)
        held.last_used = self._clock()
        if pin:
            held.in_use += 1
        if count:
            self.stats.hits += 1
            held.hits += 1
            self._count_demand(name)
            self._notify("on_hit", name)
        return CacheResult(model=held.model, hit=True)

    def _load(self, spec: ModelSpec, evicted: list[str]) -> tuple[Any, int | None]:
        """Run the loader under the measure (retried once after running out of memory)."""
        log.info("loading model %s on %s", spec.name, self.device)
        return self._retry_once_after_oom(spec, "loading", lambda: self._measure(spec.loader), claimed=True,
                                          evicted=evicted)

    def _retry_once_after_oom(
        self, spec: ModelSpec, doing: str, attempt: Callable[[], T], *, claimed: bool, evicted: list[str] | None = None
    ) -> T:
        """attempt(); after an out-of-memory error evict every other model not in use and attempt() once more."""
        try:
            return attempt()
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
        # Past the except block the first error's traceback, and the tensors its frames held, are gone.
        freed = self._free_after_oom(spec, claimed=claimed)
        if evicted is not None:
            evicted.extend(freed)
        try:
            return attempt()
        except Exception as exc:
            if is_out_of_memory(exc):
                raise ModelOutOfMemory(
                    f"{spec.name} ran out of memory on {self.device} twice while {doing} "
                    f"(evicted {freed or 'nothing'} before the retry)"
                ) from exc
            raise

    def _admit(
        self, spec: ModelSpec, model: Any, measured: int | None, load_ms: float, evicted: list[str], *, pin: bool
    ) -> tuple[int, str | None]:
        """Charge the loaded model its measured size; or, when that cannot fit, the reason to refuse it."""
        name = spec.name
        with self._lock:
            if measured is not None:
                self._measured[name] = measured
            nbytes = self._measured.get(name, spec.estimated_bytes)
            self._reserved = 0
            victims = self._room_for(spec, nbytes)
            if victims is None:
                self.stats.skips += 1
                return nbytes, (
                    f"{name} measured {_mb(nbytes)} once loaded (estimated {_mb(spec.estimated_bytes)}); "
                    + self._skip_reason(spec, nbytes)
                )
            self._take(victims, name, claim=False)
            self._held[name] = _Held(spec, model, nbytes, load_ms, self._clock(), in_use=int(pin))
            self.stats.loads += 1
            self.stats.bytes_loaded += nbytes
            self.stats.load_seconds += load_ms / 1000
        evicted.extend(self._unload(victims, "room", claimed=True))
        return nbytes, None

    def _free_after_oom(self, spec: ModelSpec, *, claimed: bool) -> list[str]:
        """Evict every other model not in use (accounting was wrong, so free all we can), then release."""
        with self._lock:
            if not claimed:
                self._wait_until_idle()
            victims = [h for h in self._held.values() if h.in_use == 0 and h.spec.name != spec.name]
            self.stats.oom_retries += 1
            self._take(victims, f"out-of-memory retry of {spec.name}", claim=not claimed)
        log.warning("%s ran out of memory on %s; evicting %s and retrying once",
                    spec.name, self.device, [v.spec.name for v in victims])
        return self._unload(victims, "oom", claimed=claimed, always_release=True)

    # -- bookkeeping (callers hold the lock) -----------------------------------------------------------
    def _second_look(self, name: str) -> _Held | None:
        """The held model, after waiting out any load or unload in flight (it may be this very model)."""
        while True:
            held = self._held.get(name)
            if held is not None or self._in_flight is None:
                return held
            self._lock.wait()

    def _wait_until_idle(self) -> None:
        while self._in_flight is not None:
            self._lock.wait()

    def _count_demand(self, name: str) -> None:
        now = self._clock()
        self._demand[name] = (self._demand_now(name, now) + 1.0, now)

    def _demand_now(self, name: str, now: float) -> float:
        """The model's requests so far, each weighing half as much every half_life_seconds."""
        count, as_of = self._demand.get(name, (0.0, now))
        return count * 0.5 ** (max(0.0, now - as_of) / self.half_life_seconds)

    def _keep_value(self, held: _Held, now: float) -> float:
        """What keeping this model is worth per GB it holds: priority weight x demand / size."""
        return held.spec.priority.weight * self._demand_now(held.spec.name, now) * GB / max(held.nbytes, 1)

    def _shielded(self, held: _Held, spec: ModelSpec, now: float) -> bool:
        """Asked for moments ago and more important than spec: most likely an earlier model of spec's event."""
        priority = held.spec.priority
        recent = now - held.last_used <= self.shield_seconds
        return recent and priority > spec.priority and priority != Priority.RESIDENT

    def _room_for(self, spec: ModelSpec, need: int) -> list[_Held] | None:
        """Victims that make room for `need` bytes, least worth keeping first; None if models in use hold too much."""
        now = self._clock()
        free = self.budget_bytes - self.used_bytes
        candidates = [h for h in self._held.values() if h.in_use == 0]  # least recently used first
        if need > free + sum(h.nbytes for h in candidates):
            return None
        order = sorted(candidates, key=lambda h: (self._shielded(h, spec, now), self._keep_value(h, now)))
        victims: list[_Held] = []
        for held in order:
            if need <= free:
                break
            victims.append(held)
            free += held.nbytes
        for held in reversed(victims[:-1]):  # a later, bigger victim may have made an earlier one needless
            if need <= free - held.nbytes:
                victims.remove(held)
                free -= held.nbytes
        return victims

    def _skip_reason(self, spec: ModelSpec, need: int) -> str:
        if need > self.budget_bytes:
            return f"{spec.name} needs {_mb(need)}, more than the whole {_mb(self.budget_bytes)} budget"
        in_use = [h for h in self._held.values() if h.in_use]
        evictable = sum(h.nbytes for h in self._held.values() if not h.in_use)
        return (
            f"{spec.name} needs {_mb(need)} of the {_mb(self.budget_bytes)} budget, but models in use hold "
            f"{_mb(sum(h.nbytes for h in in_use))} of it: "
            + ", ".join(f"{h.spec.name} ({h.spec.priority.name}, {_mb(h.nbytes)})" for h in in_use)
            + f"; {_mb(self.budget_bytes - self.used_bytes)} free, {_mb(evictable)} held by models not in use"
        )

    def _take(self, victims: list[_Held], purpose: str, *, claim: bool = True) -> None:
        """Remove victims from the books and mark the unload (or load) that follows as in flight."""
        for held in victims:
            del self._held[held.spec.name]
            self.stats.evictions += 1
        if claim:
            self._in_flight = purpose

    def _finish(self) -> None:
        self._in_flight = self._loading = None
        self._reserved = 0
        self._lock.notify_all()

    def _unpin(self, name: str) -> None:
        with self._lock:
            held = self._held.get(name)
            if held is not None and held.in_use > 0:
                held.in_use -= 1
                held.last_used = self._clock()

    # -- unloading (outside the lock, while in flight) -----------------------------------------------
    def _unload(
        self, victims: list[_Held], reason: str | None, *, claimed: bool = False, always_release: bool = False
    ) -> list[str]:
        """Call each unloader, drop our references, collect; reason None means "not counted as an eviction"."""
        names = [h.spec.name for h in victims]
        try:
            for held in victims:
                if held.spec.unloader is not None:
                    try:
                        held.spec.unloader(held.model)
                    except Exception:
                        log.exception("unloader of %s failed; dropping it anyway", held.spec.name)
                held.model = None
            if names or always_release:
                self._release()
        finally:
            if not claimed:
                with self._lock:
                    self._finish()
        if reason is not None:
            for name in names:
                log.info("evicted model %s (%s)", name, reason)
                self._notify("on_evict", name, reason)
            if names:
                self._changed()
        return names

    # -- telling others ------------------------------------------------------------------------------
    def _notify(self, event: str, *args: Any) -> None:
        try:
            getattr(self._observer, event)(*args)
        except Exception:
            log.exception("cache observer %s failed", event)

    def _changed(self) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change()
        except Exception:
            log.exception("cache on_change callback failed")
