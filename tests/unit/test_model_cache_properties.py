"""ModelCache invariants over random request sequences: budget, priorities, admission and counters."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_cache import ModelCache, ModelOutOfMemory, ModelSkipped, ModelSpec, Priority
from tests.unit.test_model_cache import MB, FakeClock, FakeLoader, RecordingObserver, fake_measure, unload_fake


@dataclass(frozen=True)
class FakeModelSpec:
    """A model in a random zoo: estimate, priority, and what the fake measure will say (None: nothing)."""

    estimated_mb: int
    priority: Priority
    measured_mb: int | None


zoo = st.lists(
    st.builds(
        FakeModelSpec,
        estimated_mb=st.integers(1, 300),
        priority=st.sampled_from(list(Priority) + [Priority.RESIDENT]),  # residents twice as likely
        measured_mb=st.one_of(st.none(), st.integers(1, 400)),
    ),
    min_size=1,
    max_size=6,
)
OUTCOMES = ["ok"] * 3 + ["fail", "oom_once", "oom_twice"]
operations = st.lists(
    st.one_of(
        st.tuples(st.just("get"), st.integers(0, 5), st.sampled_from(OUTCOMES)),
        st.tuples(st.just("tick"), st.floats(0, 400)),
        st.tuples(st.just("idle")),
        st.tuples(st.just("evict"), st.integers(0, 5)),
        st.tuples(st.just("infer"), st.integers(0, 5), st.booleans()),
    ),
    min_size=10,
    max_size=50,
)


class Zoo:
    """Specs with scriptable loaders, and what the test knows the cache should have learned."""

    def __init__(self, models: list[FakeModelSpec]):
        self.models = models
        self.loaders = [
            FakeLoader(f"m{i}", m.measured_mb * MB if m.measured_mb is not None else None)
            for i, m in enumerate(models)
        ]
        self.specs = [
            ModelSpec(f"m{i}", m.estimated_mb, m.priority, loader=self.loaders[i], unloader=unload_fake)
            for i, m in enumerate(models)
        ]
        self.learned: dict[str, int] = {}  # name -> measured bytes the cache has seen

    def planned_bytes(self, i: int) -> int:
        return self.learned.get(self.specs[i].name, self.specs[i].estimated_bytes)

    def charged_bytes(self, i: int) -> int:
        """What the cache will charge after this load."""
        measured = self.loaders[i].measured_bytes
        return measured if measured is not None else self.planned_bytes(i)


def room_for(cache: ModelCache, spec: ModelSpec) -> int:
    """Budget less what spec may not evict (higher priority or resident models)."""
    held = cache.snapshot()["models"]
    kept = sum(
        m["bytes"] for m in held
        if Priority[m["priority"]] > spec.priority or Priority[m["priority"]] == Priority.RESIDENT
    )
    return cache.budget_bytes - kept


def check_books(cache: ModelCache, budget: int) -> None:
    snapshot = cache.snapshot()
    assert snapshot["used_bytes"] <= budget
    assert snapshot["used_bytes"] == sum(m["bytes"] for m in snapshot["models"])
    assert snapshot["free_bytes"] == budget - snapshot["used_bytes"]
    assert snapshot["loading"] is None
    assert all(m["in_use"] == 0 for m in snapshot["models"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    models=zoo,
    budget_mb=st.integers(50, 600),
    idle_seconds=st.one_of(st.none(), st.floats(10, 300)),
    ops=operations,
)
def test_random_request_sequences_keep_the_cache_invariants(models, budget_mb, idle_seconds, ops):
    zoo_ = Zoo(models)
    clock = FakeClock()
    observer = RecordingObserver()
    budget = budget_mb * MB
    cache = ModelCache(budget, idle_seconds=idle_seconds, clock=clock, observer=observer,
                       measure=fake_measure, release=lambda: None)
    requests = 0
    priority = {s.name: s.priority for s in zoo_.specs}

    for op in ops:
        kind = op[0]
        if kind == "tick":
            clock.advance(op[1])
        elif kind == "get":
            i, outcome = op[1] % len(models), op[2]
            spec, loader = zoo_.specs[i], zoo_.loaders[i]
            was_held = spec.name in cache
            room, planned, charged = room_for(cache, spec), zoo_.planned_bytes(i), zoo_.charged_bytes(i)
            loader.errors = {
                "ok": [], "fail": [ValueError("broken weights")],
                "oom_once": [MemoryError()], "oom_twice": [MemoryError(), MemoryError()],
            }[outcome]
            calls_before, events_before = loader.calls, len(observer.events)
            requests += 1
            try:
                result = cache.get(spec)
            except ModelSkipped:
                assert not was_held
                assert planned > room or (loader.calls > calls_before and charged > room)
            except ValueError:
                assert not was_held and outcome == "fail" and planned <= room
            except ModelOutOfMemory:
                assert not was_held and outcome == "oom_twice" and planned <= room
            else:
                assert result.hit == was_held
                if was_held:
                    assert loader.calls == calls_before
                else:  # a model that fits is always returned
                    assert planned <= room and charged <= room and outcome in ("ok", "oom_once")
                    assert spec.name in cache
                    if outcome == "oom_once":  # everything it may evict was freed before the retry
                        assert not [m for m in cache.snapshot()["models"] if m["name"] != spec.name
                                    and Priority[m["priority"]] <= spec.priority
                                    and Priority[m["priority"]] < Priority.RESIDENT]
                for name in result.evicted:
                    assert priority[name] <= spec.priority and priority[name] < Priority.RESIDENT
            if loader.calls > calls_before and loader.measured_bytes is not None and outcome in ("ok", "oom_once"):
                zoo_.learned[spec.name] = loader.measured_bytes
            for event in observer.events[events_before:]:
                if event[0] == "evict":  # evictions made for this request never outrank it
                    assert priority[event[1]] <= spec.priority and priority[event[1]] < Priority.RESIDENT
        elif kind == "idle":
            before = {m["name"]: m for m in cache.snapshot()["models"]}
            released = cache.release_idle()
            expected = [] if idle_seconds is None else [
                name for name, m in before.items()
                if Priority[m["priority"]] < Priority.RESIDENT and m["last_used_age_s"] > idle_seconds + 1e-3
            ]
            assert set(expected) <= set(released)
            assert all(Priority[before[name]["priority"]] < Priority.RESIDENT for name in released)
            assert all(before[name]["last_used_age_s"] >= idle_seconds - 1e-3 for name in released)
        elif kind == "evict":
            name = zoo_.specs[op[1] % len(models)].name
            was_held = name in cache
            assert cache.evict(name) is was_held
            assert name not in cache
        elif kind == "infer":
            spec = zoo_.specs[op[1] % len(models)]
            if spec.name not in cache:
                continue
            others = {m["name"] for m in cache.snapshot()["models"]} - {spec.name}
            attempts = []

            def infer(model, oom=op[2]):
                attempts.append(model.name)
                if oom and len(attempts) == 1:
                    raise MemoryError()
                return model.name

            assert cache.run_with_oom_retry(spec, infer) == spec.name
            assert len(attempts) == (2 if op[2] else 1)
            gone = others - {m["name"] for m in cache.snapshot()["models"]}
            may_go = {name for name in others if priority[name] <= spec.priority and priority[name] < Priority.RESIDENT}
            assert gone == (may_go if op[2] else set())  # out of memory frees all it may, and nothing else
        check_books(cache, budget)

    stats = cache.stats
    assert stats.hits + stats.misses == requests
    assert stats.loads == stats.misses - stats.skips - stats.load_failures
    assert stats.evictions == sum(1 for e in observer.events if e[0] == "evict")
    assert stats.loads == sum(1 for e in observer.events if e[0] == "load")
    assert stats.skips == sum(1 for e in observer.events if e[0] == "skip")
    cache.clear()
    assert cache.snapshot()["used_bytes"] == 0


@settings(max_examples=100, deadline=None)
@given(models=zoo, budget_mb=st.integers(50, 600), order=st.lists(st.integers(0, 5), min_size=5, max_size=60))
def test_loaded_models_are_those_the_rules_admit(models, budget_mb, order):
    """With plain successful loads, a model is held right after it is asked for exactly when it fits."""
    zoo_ = Zoo(models)
    cache = ModelCache(budget_mb * MB, measure=fake_measure, release=lambda: None, clock=FakeClock())
    for i in order:
        i %= len(models)
        spec = zoo_.specs[i]
        fits = spec.name in cache or (
            zoo_.planned_bytes(i) <= room_for(cache, spec) and zoo_.charged_bytes(i) <= room_for(cache, spec)
        )
        measured_before = zoo_.loaders[i].calls
        try:
            cache.get(spec)
        except ModelSkipped:
            pass
        if zoo_.loaders[i].calls > measured_before and zoo_.loaders[i].measured_bytes is not None:
            zoo_.learned[spec.name] = zoo_.loaders[i].measured_bytes
        assert (spec.name in cache) == fits
        assert cache.snapshot()["used_bytes"] <= budget_mb * MB


@settings(max_examples=100, deadline=None)
@given(
    models=zoo,
    uses=st.lists(st.tuples(st.integers(0, 5), st.floats(0, 100)), min_size=1, max_size=30),
    idle_seconds=st.floats(1, 200),
)
def test_release_idle_frees_exactly_the_idle_non_resident_models(models, uses, idle_seconds):
    zoo_ = Zoo(models)
    clock = FakeClock()
    budget = sum(max(m.estimated_mb, m.measured_mb or 0) for m in models) * MB  # everything fits
    cache = ModelCache(budget, idle_seconds=idle_seconds, measure=fake_measure, release=lambda: None, clock=clock)
    last_used: dict[str, float] = {}
    for i, pause in uses:
        spec = zoo_.specs[i % len(models)]
        cache.get(spec)
        last_used[spec.name] = clock()
        clock.advance(pause)
    idle = {
        name for name, at in last_used.items()
        if clock() - at > idle_seconds and zoo_.specs[int(name[1:])].priority < Priority.RESIDENT
    }
    assert set(cache.release_idle()) == idle
    assert {m["name"] for m in cache.snapshot()["models"]} == set(last_used) - idle
