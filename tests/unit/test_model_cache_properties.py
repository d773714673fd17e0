"""ModelCache invariants over random request sequences: budget, models in use, admission, shield and counters."""

from __future__ import annotations

from contextlib import ExitStack
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
SHIELD_SECONDS = 5.0
OUTCOMES = ["ok"] * 3 + ["fail", "oom_once", "oom_twice"]
operations = st.lists(
    st.one_of(
        st.tuples(st.just("get"), st.integers(0, 5), st.sampled_from(OUTCOMES)),
        st.tuples(st.just("tick"), st.one_of(st.floats(0, 2 * SHIELD_SECONDS), st.floats(0, 400))),
        st.tuples(st.just("idle")),
        st.tuples(st.just("evict"), st.integers(0, 5)),
        st.tuples(st.just("infer"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("pin"), st.integers(0, 5)),
        st.tuples(st.just("unpin")),
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
    """Budget less what models in use hold: every other model may be evicted for any request."""
    held = cache.snapshot()["models"]
    return cache.budget_bytes - sum(m["bytes"] for m in held if m["in_use"] and m["name"] != spec.name)


def shielded_and_spare(cache: ModelCache, spec: ModelSpec) -> tuple[set[str], int]:
    """Models shielded from spec (asked for moments ago, outranking it, not resident), and the bytes that
    free memory plus the other models not in use could make."""
    snapshot = cache.snapshot()
    shielded = {
        m["name"] for m in snapshot["models"]
        if not m["in_use"] and m["last_used_age_s"] <= cache.shield_seconds
        and Priority[m["priority"]] > spec.priority and m["priority"] != "RESIDENT"
    }
    spare = snapshot["free_bytes"] + sum(
        m["bytes"] for m in snapshot["models"] if not m["in_use"] and m["name"] not in shielded
    )
    return shielded, spare


def check_books(cache: ModelCache, budget: int, pins: dict[str, int]) -> None:
    snapshot = cache.snapshot()
    assert snapshot["used_bytes"] <= budget  # never over budget: a load that cannot fit is skipped instead
    assert snapshot["used_bytes"] == sum(m["bytes"] for m in snapshot["models"])
    assert snapshot["free_bytes"] == budget - snapshot["used_bytes"]
    assert snapshot["estimated_bytes"] == sum(m["estimated_bytes"] for m in snapshot["models"])
    assert snapshot["measured_bytes"] == sum(m["measured_bytes"] or 0 for m in snapshot["models"])
    assert snapshot["loading"] is None
    assert {m["name"]: m["in_use"] for m in snapshot["models"] if m["in_use"]} == {n: c for n, c in pins.items() if c}


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
    cache = ModelCache(budget, idle_seconds=idle_seconds, shield_seconds=SHIELD_SECONDS, clock=clock,
                       observer=observer, measure=fake_measure, release=lambda: None)
    requests = 0
    pinned: list[tuple[str, ExitStack]] = []  # using() blocks still open: those models are in use
    pins: dict[str, int] = {}

    for op in ops:
        kind = op[0]
        in_use = {name for name, count in pins.items() if count}
        if kind == "tick":
            clock.advance(op[1])
        elif kind == "get":
            i, outcome = op[1] % len(models), op[2]
            spec, loader = zoo_.specs[i], zoo_.loaders[i]
            was_held = spec.name in cache
            room, planned, charged = room_for(cache, spec), zoo_.planned_bytes(i), zoo_.charged_bytes(i)
            shielded, spare = shielded_and_spare(cache, spec)
            loader.errors = {
                "ok": [], "fail": [ValueError("broken weights")],
                "oom_once": [MemoryError()], "oom_twice": [MemoryError(), MemoryError()],
            }[outcome]
            calls_before, events_before = loader.calls, len(observer.events)
            requests += 1
            try:
                result = cache.get(spec)
            except ModelSkipped:  # only when it cannot fit beside the models in use (or at all)
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
                else:  # a model that fits beside the models in use is always served
                    assert planned <= room and charged <= room and outcome in ("ok", "oom_once")
                    assert spec.name in cache
                    if outcome == "oom_once":  # everything not in use was freed before the retry
                        assert {m["name"] for m in cache.snapshot()["models"]} <= in_use | {spec.name}
                    elif max(planned, charged) <= spare:  # the others could make room: the shield held
                        assert not shielded & set(result.evicted)
            if loader.calls > calls_before and loader.measured_bytes is not None and outcome in ("ok", "oom_once"):
                zoo_.learned[spec.name] = loader.measured_bytes
            evicted = {event[1] for event in observer.events[events_before:] if event[0] == "evict"}
            assert not evicted & in_use  # a model in use is never evicted
        elif kind == "pin":  # an inference starts on a loaded model and keeps running across the next operations
            held = [m["name"] for m in cache.snapshot()["models"]]
            if not held:
                continue
            spec = zoo_.specs[int(held[op[1] % len(held)][1:])]
            stack = ExitStack()
            stack.enter_context(cache.using(spec))  # a hit: not counted as a request
            pinned.append((spec.name, stack))
            pins[spec.name] = pins.get(spec.name, 0) + 1
        elif kind == "unpin":
            if not pinned:
                continue
            name, stack = pinned.pop(0)
            stack.close()
            pins[name] -= 1
        elif kind == "idle":
            before = {m["name"]: m for m in cache.snapshot()["models"]}
            released = cache.release_idle()
            expected = [] if idle_seconds is None else [
                name for name, m in before.items()
                if Priority[m["priority"]] < Priority.RESIDENT and not m["in_use"]
                and m["last_used_age_s"] > idle_seconds + 1e-3
            ]
            assert set(expected) <= set(released)
            assert all(Priority[before[name]["priority"]] < Priority.RESIDENT for name in released)
            assert not set(released) & in_use
            assert all(before[name]["last_used_age_s"] >= idle_seconds - 1e-3 for name in released)
        elif kind == "evict":
            name = zoo_.specs[op[1] % len(models)].name
            if name in in_use:
                continue  # evict() is an explicit command that does not wait for inferences to end
            was_held = name in cache
            assert cache.evict(name) is was_held
            assert name not in cache
        elif kind == "infer":
            spec = zoo_.specs[op[1] % len(models)]
            if spec.name not in cache:
                continue
            others = {m["name"] for m in cache.snapshot()["models"]} - {spec.name}
            attempts = []

            def infer(model, oom=op[2], attempts=attempts):
                attempts.append(model.name)
                if oom and len(attempts) == 1:
                    raise MemoryError()
                return model.name

            assert cache.run_with_oom_retry(spec, infer) == spec.name
            assert len(attempts) == (2 if op[2] else 1)
            gone = others - {m["name"] for m in cache.snapshot()["models"]}
            assert gone == (others - in_use if op[2] else set())  # out of memory frees all it may, and nothing else
        check_books(cache, budget, pins)

    while pinned:
        pinned.pop()[1].close()
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
def test_with_nothing_in_use_every_request_that_fits_the_budget_is_served(models, budget_mb, order):
    """With plain successful loads, a model is held right after it is asked for exactly when it fits alone."""
    zoo_ = Zoo(models)
    cache = ModelCache(budget_mb * MB, measure=fake_measure, release=lambda: None, clock=FakeClock())
    for i in order:
        i %= len(models)
        spec = zoo_.specs[i]
        fits = spec.name in cache or max(zoo_.planned_bytes(i), zoo_.charged_bytes(i)) <= cache.budget_bytes
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


@settings(max_examples=200, deadline=None)
@given(
    models=zoo,
    budget_mb=st.integers(50, 600),
    history=st.lists(st.tuples(st.integers(0, 5), st.floats(0, 100)), max_size=20),
    event=st.lists(st.integers(0, 5), min_size=2, max_size=6),
)
def test_an_event_never_pushes_out_its_more_important_models_while_others_could_make_room(
    models, budget_mb, history, event
):
    """The planner asks for an event's models most important first; a later one evicts an earlier, more
    important one (not resident) only when the models from before the event and free memory cannot make room."""
    zoo_ = Zoo(models)
    clock = FakeClock()
    cache = ModelCache(budget_mb * MB, shield_seconds=SHIELD_SECONDS, clock=clock, measure=fake_measure,
                       release=lambda: None)

    def ask(i: int) -> list[str] | None:
        spec, loader = zoo_.specs[i], zoo_.loaders[i]
        calls_before = loader.calls
        try:
            return cache.get(spec).evicted
        except ModelSkipped:
            return None
        finally:
            if loader.calls > calls_before and loader.measured_bytes is not None:
                zoo_.learned[spec.name] = loader.measured_bytes

    for i, pause in history:
        ask(i % len(models))
        clock.advance(pause)
    clock.advance(SHIELD_SECONDS + 1)  # the event starts: what came before is not shielded
    asked: list[ModelSpec] = []
    for i in sorted({j % len(models) for j in event}, key=lambda j: -zoo_.specs[j].priority):
        spec = zoo_.specs[i]
        earlier = {
            s.name for s in asked if s.priority > spec.priority and s.priority != Priority.RESIDENT and s.name in cache
        }
        snapshot = cache.snapshot()
        others_room = snapshot["free_bytes"] + sum(m["bytes"] for m in snapshot["models"] if m["name"] not in earlier)
        planned = zoo_.planned_bytes(i)  # what the cache makes room for before loading (learned only afterwards)
        evicted = ask(i)
        if evicted is not None and max(planned, zoo_.charged_bytes(i)) <= others_room:
            assert not earlier & set(evicted)
        asked.append(spec)
