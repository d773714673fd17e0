"""ModelCache behaviour with fake models, a fake clock and a fake memory measure."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field

import pytest

from model_cache import CacheObserver, ModelCache, ModelOutOfMemory, ModelSkipped, ModelSpec, Priority
from model_cache.footprint import is_out_of_memory, tensor_bytes

MB = 1024 * 1024


# -- fakes shared with test_model_cache_properties.py -------------------------------------------------
class FakeClock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeModel:
    """What a fake loader returns: a name and the bytes the fake measure reports (None: unmeasurable)."""

    name: str
    nbytes: int | None
    unloaded: bool = False


def fake_measure(load):
    model = load()
    return model, model.nbytes


@dataclass
class FakeLoader:
    """Counts its calls; raises the queued errors first; can block until released."""

    name: str
    measured_bytes: int | None = None
    errors: list[BaseException | None] = field(default_factory=list)
    gate: threading.Event | None = None
    delay: float = 0.0
    calls: int = 0

    def __call__(self) -> FakeModel:
        self.calls += 1
        if self.gate is not None:
            assert self.gate.wait(10), "test never opened the gate"
        if self.delay:
            time.sleep(self.delay)
        if self.errors:
            error = self.errors.pop(0)
            if error is not None:
                raise error
        return FakeModel(self.name, self.measured_bytes)


def unload_fake(model: FakeModel) -> None:
    model.unloaded = True


def make_spec(name: str, mb: float, priority: Priority = Priority.MEDIUM, *, measured_mb: float | None = None,
              loader: FakeLoader | None = None) -> ModelSpec:
    loader = loader or FakeLoader(name, int(measured_mb * MB) if measured_mb is not None else None)
    return ModelSpec(name=name, estimated_mb=mb, priority=priority, loader=loader, unloader=unload_fake)


class RecordingObserver(CacheObserver):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_hit(self, name):
        self.events.append(("hit", name))

    def on_miss(self, name):
        self.events.append(("miss", name))

    def on_load(self, name, seconds, nbytes):
        self.events.append(("load", name, nbytes))

    def on_evict(self, name, reason):
        self.events.append(("evict", name, reason))

    def on_skip(self, name, reason):
        self.events.append(("skip", name))


def make_cache(budget_mb: float, **kwargs) -> ModelCache:
    kwargs.setdefault("measure", fake_measure)
    kwargs.setdefault("release", lambda: None)
    kwargs.setdefault("clock", FakeClock())
    return ModelCache(int(budget_mb * MB), **kwargs)


def names(cache: ModelCache) -> list[str]:
    return [m["name"] for m in cache.snapshot()["models"]]


# -- hits, misses, the choice of victim --------------------------------------------------------------------------
def test_second_get_is_a_hit_and_does_not_load_again():
    cache = make_cache(1000)
    spec = make_spec("pose", 300)
    first, second = cache.get(spec), cache.get(spec)
    assert (first.hit, second.hit) == (False, True)
    assert first.model is second.model
    assert spec.loader.calls == 1
    assert cache.stats.hits == 1 and cache.stats.misses == 1 and cache.stats.loads == 1


def test_low_priority_model_still_loads_when_only_higher_priorities_hold_the_budget():
    cache = make_cache(1000)
    cache.get(make_spec("threat", 500, Priority.CRITICAL))
    cache.get(make_spec("pose", 400, Priority.HIGH))
    result = cache.get(make_spec("depth", 300, Priority.LOW))  # no starvation: priority is a weight, not a wall
    assert result.hit is False and result.evicted == ["pose"]  # the cheaper to lose: weight 3 against 4
    assert names(cache) == ["threat", "depth"]
    assert cache.stats.skips == 0


def test_lower_priority_goes_first_at_equal_demand_and_size():
    clock = FakeClock()
    cache = make_cache(1000, clock=clock)
    cache.get(make_spec("reid", 400, Priority.MEDIUM))  # older
    cache.get(make_spec("depth", 400, Priority.LOW))  # as recent, but weighs less
    result = cache.get(make_spec("clothing", 400, Priority.HIGH))
    assert result.evicted == ["depth"]
    assert names(cache) == ["reid", "clothing"]


def test_priority_is_weighed_against_demand():
    clock = FakeClock()
    cache = make_cache(1000, clock=clock)
    depth, clothing = make_spec("depth", 400, Priority.LOW), make_spec("clothing", 400, Priority.HIGH)
    cache.get(clothing)
    for _ in range(4):
        cache.get(depth)  # asked for four times: 4 x weight 1 outweighs 1 x weight 3
    clock.advance(10)  # a later event
    assert cache.get(make_spec("pet", 400, Priority.MEDIUM)).evicted == ["clothing"]
    assert sorted(names(cache)) == ["depth", "pet"]


def test_per_byte_a_big_model_is_worth_less_than_a_small_one():
    cache = make_cache(1000)
    cache.get(make_spec("reid", 100))  # least recently used, but holds little
    cache.get(make_spec("vehicle", 500))
    result = cache.get(make_spec("pet", 500))  # evicting reid alone would make room; vehicle frees more per request
    assert result.evicted == ["vehicle"]
    assert names(cache) == ["reid", "pet"]


def test_old_demand_fades_with_the_half_life():
    clock = FakeClock()
    cache = make_cache(1000, clock=clock, half_life_seconds=600)
    busy, recent = make_spec("pet", 400), make_spec("vehicle", 400)
    for _ in range(3):
        cache.get(busy)
    clock.advance(1200)  # two half-lives: pet's three requests now count as 0.75
    cache.get(recent)
    assert cache.get(make_spec("reid", 400)).evicted == ["pet"]
    assert [m["demand"] for m in cache.snapshot()["models"]] == [1.0, 1.0]


def test_least_recently_used_goes_first_among_equals():
    cache = make_cache(1000)
    pet, reid = make_spec("pet", 400), make_spec("reid", 400)
    cache.get(pet)
    cache.get(reid)  # same clock, same demand, same size, same priority: only recency differs
    assert cache.get(make_spec("vehicle", 400)).evicted == ["pet"]


def test_victim_made_needless_by_a_bigger_one_is_spared():
    clock = FakeClock()
    cache = make_cache(1000, clock=clock, half_life_seconds=600)
    cache.get(make_spec("small", 100, Priority.LOW))
    clock.advance(1200)  # small's demand has faded to 0.25: it is the first candidate
    cache.get(make_spec("big", 700, Priority.MEDIUM))
    result = cache.get(make_spec("new", 750, Priority.MEDIUM))  # free 200: evicting big alone is enough
    assert result.evicted == ["big"]
    assert sorted(names(cache)) == ["new", "small"]


# -- an event's models --------------------------------------------------------------------------------------
def event_after_a_busy_minute(clock: FakeClock) -> ModelCache:
    """clothing asked for three times a minute ago, then an event's vehicle model just loaded."""
    cache = make_cache(1000, clock=clock)
    clothing = make_spec("clothing", 300, Priority.HIGH)
    for _ in range(3):
        cache.get(clothing)
    clock.advance(60)
    cache.get(make_spec("vehicle", 600, Priority.MEDIUM))
    return cache


def test_an_event_does_not_push_out_its_more_important_model_just_loaded():
    clock = FakeClock()
    cache = event_after_a_busy_minute(clock)
    # Per byte vehicle is worth least (2 x 1 / 600 MB against 3 x 3 / 300 MB), but it was asked for moments ago
    # and outranks depth: the planner asked for it first in this very event, and it may not have run yet.
    result = cache.get(make_spec("depth", 150, Priority.LOW))
    assert result.evicted == ["clothing"]
    assert names(cache) == ["vehicle", "depth"]


def test_the_shield_lapses_after_shield_seconds():
    clock = FakeClock()
    cache = event_after_a_busy_minute(clock)
    clock.advance(cache.shield_seconds + 1)  # the next event: vehicle is weighed like any other model
    assert cache.get(make_spec("depth", 150, Priority.LOW)).evicted == ["vehicle"]


def test_the_shield_gives_way_when_the_event_does_not_fit():
    cache = make_cache(1000)
    cache.get(make_spec("threat", 500, Priority.CRITICAL))
    cache.get(make_spec("clothing", 400, Priority.HIGH))
    result = cache.get(make_spec("depth", 300, Priority.LOW))  # only the event's own models can make room
    assert result.evicted == ["clothing"]
    assert cache.stats.skips == 0


def test_models_of_an_event_held_in_use_are_never_evicted_for_its_later_models():
    cache = make_cache(1000)
    threat, pose = make_spec("threat", 500, Priority.CRITICAL), make_spec("pose", 400, Priority.HIGH)
    with cache.using(threat), cache.using(pose):  # the event's first models are still running
        with pytest.raises(ModelSkipped) as skipped:
            cache.get(make_spec("depth", 300, Priority.LOW))
        assert "models in use hold 900.0 MB" in skipped.value.reason
        assert "threat (CRITICAL, 500.0 MB), pose (HIGH, 400.0 MB)" in skipped.value.reason
    assert cache.get(make_spec("depth", 300, Priority.LOW)).evicted == ["pose"]


# -- resident models -----------------------------------------------------------------------------------------
def test_resident_model_weighs_most():
    clock = FakeClock()
    cache = make_cache(1000, clock=clock)
    cache.get(make_spec("clip", 400, Priority.RESIDENT))
    cache.get(make_spec("threat", 400, Priority.CRITICAL))
    clock.advance(10)  # a later event
    assert cache.get(make_spec("pose", 400, Priority.HIGH)).evicted == ["threat"]


def test_resident_model_gives_way_when_a_request_could_not_be_served_otherwise():
    cache = make_cache(1000)
    florence = make_spec("florence", 700, Priority.RESIDENT)
    cache.get(florence)
    result = cache.get(make_spec("threat", 400, Priority.CRITICAL))
    assert result.evicted == ["florence"] and florence.loader.calls == 1
    assert names(cache) == ["threat"]


def test_resident_model_is_not_shielded_by_its_event():
    # Two resident models nearly fill a small budget: shielding them would make every other model of the
    # event miss, so they keep their place by weight and demand alone.
    clock = FakeClock()
    cache = make_cache(1000, clock=clock)
    threat = make_spec("threat", 300, Priority.CRITICAL)
    for _ in range(3):
        cache.get(threat)
    clock.advance(60)
    cache.get(make_spec("florence", 600, Priority.RESIDENT))
    assert cache.get(make_spec("pose", 200, Priority.HIGH)).evicted == ["florence"]


def test_model_larger_than_the_budget_is_skipped_without_loading():
    cache = make_cache(1000)
    action = make_spec("action", 1500, Priority.LOW)
    with pytest.raises(ModelSkipped, match="more than the whole 1000.0 MB budget"):
        cache.get(action)
    assert action.loader.calls == 0
    assert cache.stats.misses == 1 and cache.stats.skips == 1 and cache.stats.loads == 0


# -- measured footprint --------------------------------------------------------------------------------
def test_measured_footprint_replaces_estimate():
    cache = make_cache(200)
    clip = make_spec("clip", 150, Priority.MEDIUM, measured_mb=40)
    cache.get(clip)
    model = cache.snapshot()["models"][0]
    assert (model["estimated_bytes"], model["measured_bytes"], model["bytes"]) == (150 * MB, 40 * MB, 40 * MB)
    assert cache.snapshot()["used_bytes"] == 40 * MB


def test_measurement_is_remembered_across_unload_and_reload():
    cache = make_cache(200)
    clip = make_spec("clip", 150, measured_mb=40)
    cache.get(clip)
    cache.evict("clip")
    cache.get(make_spec("vehicle", 150, measured_mb=150))
    result = cache.get(clip)  # planned at 40 MB: fits beside vehicle; the 150 MB estimate would have evicted it
    assert result.evicted == []
    assert sorted(names(cache)) == ["clip", "vehicle"]


def test_measurement_over_the_estimate_that_cannot_fit_is_unloaded_and_skipped():
    cache = make_cache(1000)
    threat = make_spec("threat", 500, Priority.CRITICAL)
    loader = FakeLoader("vehicle", 800 * MB)
    vehicle = make_spec("vehicle", 400, loader=loader)
    with cache.using(threat):  # 500 MB in use: room for the 400 MB estimate, not for the 800 MB measured
        with pytest.raises(ModelSkipped, match="measured 800.0 MB once loaded"):
            cache.get(vehicle)
        assert names(cache) == ["threat"]
        assert cache.snapshot()["used_bytes"] == 500 * MB
        with pytest.raises(ModelSkipped):
            cache.get(vehicle)  # the measurement is remembered: no second load
    assert loader.calls == 1
    assert cache.stats.skips == 2 and cache.stats.loads == 1
    assert cache.get(vehicle).evicted == ["threat"]  # once threat is done, it fits by evicting it


def test_measurement_bigger_than_the_budget_is_skipped_for_good():
    cache = make_cache(1000)
    loader = FakeLoader("action", 1200 * MB)
    action = make_spec("action", 650, Priority.LOW, loader=loader)
    with pytest.raises(ModelSkipped, match="measured 1200.0 MB once loaded .*more than the whole 1000.0 MB budget"):
        cache.get(action)
    with pytest.raises(ModelSkipped, match="more than the whole"):
        cache.get(action)
    assert loader.calls == 1 and len(cache) == 0


def test_refused_model_is_unloaded_and_dropped_after_measuring():
    made, unloaded = [], []

    def load():
        model = FakeModel("vehicle", 800 * MB)
        made.append(weakref.ref(model))
        return model

    alive_when_released = []
    cache = make_cache(1000, release=lambda: alive_when_released.append(made[0]() is not None))
    with cache.using(make_spec("threat", 500, Priority.CRITICAL)), pytest.raises(ModelSkipped):
        cache.get(ModelSpec("vehicle", 400, Priority.MEDIUM, loader=load, unloader=lambda m: unloaded.append(m.name)))
    assert unloaded == ["vehicle"]
    assert alive_when_released == [False]  # nothing held it any more when memory was released
    assert cache.snapshot()["loading"] is None


def test_snapshot_shows_estimated_and_measured_bytes_side_by_side():
    cache = make_cache(2000)
    cache.get(make_spec("clothing", 800, Priority.HIGH, measured_mb=573))
    cache.get(make_spec("pet", 200))  # unmeasurable: charged its estimate
    snapshot = cache.snapshot()
    assert [(m["name"], m["estimated_bytes"], m["measured_bytes"], m["bytes"]) for m in snapshot["models"]] == [
        ("clothing", 800 * MB, 573 * MB, 573 * MB), ("pet", 200 * MB, None, 200 * MB),
    ]
    assert (snapshot["estimated_bytes"], snapshot["measured_bytes"], snapshot["unmeasured"]) == (
        1000 * MB, 573 * MB, ["pet"],
    )
    assert snapshot["used_bytes"] == 773 * MB


def test_unmeasurable_model_is_charged_its_estimate():
    cache = make_cache(1000)
    cache.get(make_spec("pet", 200))  # fake measure reports None
    assert cache.snapshot()["models"][0]["measured_bytes"] is None
    assert cache.snapshot()["used_bytes"] == 200 * MB


# -- idle release, evict, clear --------------------------------------------------------------------------
def test_idle_models_are_released():
    clock = FakeClock()
    cache = make_cache(2000, idle_seconds=60, clock=clock)
    cache.get(make_spec("florence", 500, Priority.RESIDENT))
    cache.get(make_spec("depth", 100, Priority.LOW))
    clock.advance(45)
    cache.get(make_spec("pose", 300, Priority.HIGH))
    clock.advance(30)  # depth idle 75 s, pose 30 s, florence 75 s but resident
    assert cache.release_idle() == ["depth"]
    assert sorted(names(cache)) == ["florence", "pose"]
    assert cache.stats.evictions == 1


def test_model_in_use_is_not_released_however_long_it_runs():
    clock = FakeClock()
    cache = make_cache(1000, idle_seconds=60, clock=clock)
    action = make_spec("action", 600, Priority.LOW)
    with cache.using(action):
        clock.advance(120)
        assert cache.release_idle() == []
    clock.advance(61)
    assert cache.release_idle() == ["action"]


def test_release_idle_without_idle_seconds_keeps_everything():
    clock = FakeClock()
    cache = make_cache(1000, clock=clock)
    cache.get(make_spec("depth", 100, Priority.LOW))
    clock.advance(10**6)
    assert cache.release_idle() == []
    assert names(cache) == ["depth"]


def test_evict_and_clear_unload_everything_they_name():
    cache = make_cache(2000)
    resident = cache.get(make_spec("clip", 800, Priority.RESIDENT)).model
    depth = cache.get(make_spec("depth", 150, Priority.LOW)).model
    assert cache.evict("depth") is True and depth.unloaded
    assert cache.evict("depth") is False
    cache.clear()
    assert resident.unloaded and len(cache) == 0 and cache.snapshot()["used_bytes"] == 0


def test_unload_calls_unloader_drops_references_and_releases_memory():
    releases = []
    cache = make_cache(1000, release=lambda: releases.append(gc.collect()))
    spec = make_spec("pose", 300)
    model = cache.get(spec).model
    alive = weakref.ref(model)
    del model
    assert cache.evict("pose")
    assert alive() is None
    assert len(releases) == 1


def test_failing_unloader_still_removes_the_model():
    def broken_unloader(model):
        raise RuntimeError("unload exploded")

    cache = make_cache(1000)
    spec = ModelSpec("pose", 300, Priority.HIGH, loader=FakeLoader("pose"), unloader=broken_unloader)
    cache.get(spec)
    assert cache.evict("pose")
    assert cache.snapshot()["used_bytes"] == 0
    assert cache.get(spec).hit is False


# -- failures and out-of-memory ---------------------------------------------------------------------------
def test_failing_loader_raises_and_leaves_cache_consistent():
    cache = make_cache(1000)
    cache.get(make_spec("depth", 400, Priority.LOW))
    loader = FakeLoader("vehicle", errors=[FileNotFoundError("weights missing")])
    vehicle = make_spec("vehicle", 800, Priority.MEDIUM, loader=loader)
    with pytest.raises(FileNotFoundError):
        cache.get(vehicle)
    snapshot = cache.snapshot()
    assert snapshot["models"] == [] and snapshot["used_bytes"] == 0 and snapshot["loading"] is None
    assert snapshot["stats"]["load_failures"] == 1 and snapshot["stats"]["evictions"] == 1
    assert cache.get(vehicle).hit is False  # the next request tries again
    assert loader.calls == 2


def test_oom_during_load_evicts_everything_not_in_use_and_retries_once():
    cache = make_cache(2000)
    cache.get(make_spec("depth", 150, Priority.LOW))
    cache.get(make_spec("clip", 100, Priority.RESIDENT))
    threat = make_spec("threat", 400, Priority.CRITICAL)
    loader = FakeLoader("vehicle", errors=[RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB")])
    with cache.using(threat):
        result = cache.get(make_spec("vehicle", 500, Priority.MEDIUM, loader=loader))
    assert loader.calls == 2
    assert result.hit is False and sorted(result.evicted) == ["clip", "depth"]  # the resident too: it is not in use
    assert sorted(names(cache)) == ["threat", "vehicle"]  # threat was in use
    assert cache.stats.oom_retries == 1 and cache.stats.loads == 4 and cache.stats.load_failures == 0


def test_oom_twice_during_load_raises_and_the_cache_keeps_serving():
    cache = make_cache(2000)
    loader = FakeLoader("vehicle", errors=[MemoryError(), MemoryError()])
    vehicle = make_spec("vehicle", 500, loader=loader)
    with pytest.raises(ModelOutOfMemory, match="vehicle ran out of memory on cpu twice while loading"):
        cache.get(vehicle)
    assert loader.calls == 2 and cache.stats.load_failures == 1 and cache.snapshot()["loading"] is None
    assert cache.get(make_spec("pet", 200)).hit is False


def test_oom_during_inference_evicts_others_and_retries_once():
    cache = make_cache(2000)
    cache.get(make_spec("depth", 150, Priority.LOW))
    pose = make_spec("pose", 300, Priority.HIGH)
    cache.get(pose)
    attempts = []

    def infer(model):
        attempts.append(sorted(names(cache)))
        if len(attempts) == 1:
            raise RuntimeError("CUDA out of memory")
        return {"posture": "standing", "model": model.name}

    assert cache.run_with_oom_retry(pose, infer) == {"posture": "standing", "model": "pose"}
    assert attempts == [["depth", "pose"], ["pose"]]
    assert cache.stats.oom_retries == 1
    assert cache.stats.hits == 0  # get() counted the request; running it is not a second one


def test_oom_twice_during_inference_raises_clear_error():
    cache = make_cache(2000)
    pose = make_spec("pose", 300, Priority.HIGH)

    def infer(model):
        raise MemoryError()

    with pytest.raises(ModelOutOfMemory, match="pose ran out of memory on cpu twice while running"):
        cache.run_with_oom_retry(pose, infer)
    assert names(cache) == ["pose"]
    assert cache.snapshot()["models"][0]["in_use"] == 0


def test_oom_retry_never_evicts_a_model_in_use():
    cache = make_cache(2000)
    threat = make_spec("threat", 400, Priority.CRITICAL)
    cache.get(make_spec("florence", 600, Priority.RESIDENT))
    depth = make_spec("depth", 150, Priority.LOW)
    calls = []

    def infer(model):
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError()
        return "ok"

    with cache.using(threat):  # another event's threat inference is running beside depth's
        assert cache.run_with_oom_retry(depth, infer) == "ok"
    assert sorted(names(cache)) == ["depth", "threat"]


def test_other_inference_errors_are_not_retried():
    cache = make_cache(2000)
    calls = []

    def infer(model):
        calls.append(1)
        raise ValueError("bad crop")

    with pytest.raises(ValueError):
        cache.run_with_oom_retry(make_spec("pose", 300), infer)
    assert len(calls) == 1 and cache.stats.oom_retries == 0


def test_recognises_out_of_memory_errors():
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory"))
    try:
        try:
            raise MemoryError()
        except MemoryError as inner:
            raise OSError("loading weights failed") from inner
    except OSError as outer:
        assert is_out_of_memory(outer)
    assert not is_out_of_memory(ValueError("out of memory"))  # only RuntimeErrors are read by message


# -- models in use, threads ---------------------------------------------------------------------------------
def test_model_in_use_is_never_evicted_even_for_a_more_important_one():
    cache = make_cache(1000)
    reid = make_spec("reid", 600, Priority.MEDIUM)
    cache.get(make_spec("depth", 100, Priority.LOW))
    with cache.using(reid) as model:
        assert model.name == "reid"
        with pytest.raises(ModelSkipped) as skipped:
            cache.get(make_spec("threat", 600, Priority.CRITICAL))
        assert skipped.value.reason == (
            "threat needs 600.0 MB of the 1000.0 MB budget, but models in use hold 600.0 MB of it: "
            "reid (MEDIUM, 600.0 MB); 300.0 MB free, 100.0 MB held by models not in use"
        )
        assert names(cache) == ["depth", "reid"]  # depth alone could not make room, so it stays
    assert cache.get(make_spec("threat", 600, Priority.CRITICAL)).evicted == ["reid"]


def test_concurrent_get_loads_once():
    cache = make_cache(1000)
    loader = FakeLoader("clothing", delay=0.2)
    spec = make_spec("clothing", 800, Priority.HIGH, loader=loader)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(spec))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert loader.calls == 1
    assert len(results) == 8 and len({id(r.model) for r in results}) == 1
    assert sorted(r.hit for r in results) == [False] + [True] * 7
    assert cache.stats.misses == 1 and cache.stats.hits == 7


def test_hits_are_served_while_another_model_loads():
    cache = make_cache(2000)
    pose = make_spec("pose", 300)
    cache.get(pose)
    gate = threading.Event()
    slow = make_spec("vehicle", 1500, loader=FakeLoader("vehicle", gate=gate))
    loading = threading.Thread(target=cache.get, args=(slow,))
    loading.start()
    try:
        deadline = time.monotonic() + 5
        while cache.snapshot()["loading"] != "vehicle" and time.monotonic() < deadline:
            time.sleep(0.005)
        snapshot = cache.snapshot()
        assert snapshot["loading"] == "vehicle"
        assert snapshot["used_bytes"] == 1800 * MB  # the load in flight is reserved
        assert cache.get(pose).hit is True
        assert cache.release_idle() == []  # never blocks the heartbeat
    finally:
        gate.set()
        loading.join(10)
    assert sorted(names(cache)) == ["pose", "vehicle"]


# -- telling others -----------------------------------------------------------------------------------------
def test_on_change_follows_loads_and_evictions_and_may_read_the_cache():
    seen = []
    cache = make_cache(1000, on_change=lambda: seen.append(names(cache)))
    cache.get(make_spec("depth", 600, Priority.LOW))
    cache.get(make_spec("depth", 600, Priority.LOW))  # a hit changes nothing
    cache.get(make_spec("reid", 600, Priority.MEDIUM))
    cache.evict("reid")
    assert seen == [["depth"], [], ["reid"], []]


def test_observer_sees_hits_misses_loads_evictions_and_skips():
    observer = RecordingObserver()
    cache = make_cache(1000, observer=observer)
    cache.get(make_spec("depth", 600, Priority.LOW))
    cache.get(make_spec("depth", 600, Priority.LOW))
    cache.get(make_spec("reid", 600, Priority.MEDIUM))
    with pytest.raises(ModelSkipped):
        cache.get(make_spec("pet", 1200, Priority.LOW))
    assert observer.events == [
        ("miss", "depth"), ("load", "depth", 600 * MB), ("hit", "depth"),
        ("miss", "reid"), ("evict", "depth", "room"), ("load", "reid", 600 * MB),
        ("miss", "pet"), ("skip", "pet"),
    ]


def test_snapshot_is_json_serialisable():
    clock = FakeClock()
    cache = make_cache(1000, clock=clock)
    cache.get(make_spec("clip", 300, Priority.RESIDENT, measured_mb=250))
    clock.advance(2.5)
    snapshot = json.loads(json.dumps(cache.snapshot()))
    assert snapshot["budget_bytes"] == 1000 * MB and snapshot["free_bytes"] == 750 * MB
    assert snapshot["models"][0] | {"load_ms": 0} == {
        "name": "clip", "priority": "RESIDENT", "bytes": 250 * MB, "estimated_bytes": 300 * MB,
        "measured_bytes": 250 * MB, "demand": 0.999, "last_used_age_s": 2.5, "load_ms": 0, "hits": 0, "in_use": 0,
    }
    assert set(snapshot["stats"]) >= {"hits", "misses", "loads", "evictions", "skips", "load_failures", "oom_retries"}


# -- footprint -----------------------------------------------------------------------------------------------
def test_cpu_footprint_counts_tensors_reachable_from_the_wrapper():
    torch = pytest.importorskip("torch")

    class Wrapper:
        def __init__(self):
            self.path, self.device = "/models/x", "cpu"
            self.model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.BatchNorm1d(20))
            self.heads = {"same": self.model, "extra": torch.nn.Linear(20, 5, bias=False)}
            self._text_embeds = torch.zeros(6, 20)  # cached prompt embeddings live outside the modules
            self.vocabulary = {f"token{i}": i for i in range(1000)}

    linear = (10 * 20 + 20) * 4
    batchnorm = (20 + 20) * 4 + (20 + 20) * 4 + 8  # weight, bias; running mean, var; num_batches_tracked
    assert tensor_bytes(Wrapper()) == linear + batchnorm + 20 * 5 * 4 + 6 * 20 * 4
    assert tensor_bytes({"tokenizer": "a tokenizer", "labels": ["a", "b"]}) is None


def test_cuda_footprint_is_the_allocator_delta_around_the_load(monkeypatch):
    torch = pytest.importorskip("torch")
    from model_cache.footprint import measure_cuda_load

    allocated = {"bytes": 5 * MB}
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: allocated["bytes"])

    def load():
        allocated["bytes"] += 300 * MB
        return "model on the gpu"

    assert measure_cuda_load(load, "cuda:0") == ("model on the gpu", 300 * MB)
    assert measure_cuda_load(lambda: torch.nn.Linear(4, 4), "cuda:0")[1] == (16 + 4) * 4  # nothing allocated


def test_release_memory_empties_the_cuda_cache_when_cuda_is_there(monkeypatch):
    torch = pytest.importorskip("torch")
    from model_cache.footprint import release_memory

    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    release_memory()
    assert emptied == [True]


def test_cache_works_without_torch():
    script = (
        "import sys\n"
        "from model_cache import ModelCache, ModelSpec, Priority\n"
        "cache = ModelCache(10 * 2**20)\n"
        "cache.get(ModelSpec('m', 1, Priority.LOW, loader=dict))\n"
        "cache.evict('m')\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_torch_still_being_imported_by_another_thread_is_not_used_to_measure(monkeypatch):
    """A model measured while the warm-up thread imports torch: the half-made module is left alone."""
    import sys
    from types import ModuleType, SimpleNamespace

    from model_cache import footprint

    half_made = ModuleType("torch")
    half_made.__spec__ = SimpleNamespace(_initializing=True)
    monkeypatch.setitem(sys.modules, "torch", half_made)
    assert footprint._torch() is None
    assert footprint._is_module(object()) is False  # no AttributeError: 'torch' has no attribute 'nn'
