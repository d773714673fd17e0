"""Micro-batching: concurrent requests for one model share a call; every caller gets its own answer."""

from __future__ import annotations

import threading
import time

import pytest
from PIL import Image

from workers.batching import MicroBatcher, infer_many
from workers.models.base import ModelInput


def run_concurrently(batcher: MicroBatcher, requests: list[tuple[str, int]]) -> dict[int, object]:
    """Submit every (key, item) from its own thread at once; item -> its answer or exception."""
    answers: dict[int, object] = {}
    start = threading.Barrier(len(requests))

    def call(key: str, item: int) -> None:
        start.wait()
        try:
            answers[item] = batcher.submit(key, item)
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            answers[item] = exc

    threads = [threading.Thread(target=call, args=request) for request in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return answers


class Recorder:
    """A batch runner that remembers each batch it was given."""

    def __init__(self, fail_on: int | None = None):
        self.batches: list[tuple[str, list[int]]] = []
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, key: str, items: list[int]) -> list[object]:
        with self.lock:
            self.batches.append((key, list(items)))
        return [ValueError(f"bad {i}") if i == self.fail_on else (key, i * 10) for i in items]


def test_concurrent_requests_for_one_model_run_as_one_batch():
    runner = Recorder()
    batcher = MicroBatcher(runner, max_size=8, max_wait=0.5)
    answers = run_concurrently(batcher, [("pose", i) for i in range(8)])
    assert answers == {i: ("pose", i * 10) for i in range(8)}
    assert len(runner.batches) == 1 and sorted(runner.batches[0][1]) == list(range(8))
    assert batcher.stats().batches == 1 and batcher.stats().largest == 8


def test_batches_never_exceed_the_size_bound_and_models_are_not_mixed():
    runner = Recorder()
    batcher = MicroBatcher(runner, max_size=3, max_wait=0.2)
    requests = [("pose", i) for i in range(7)] + [("reid", i) for i in range(100, 104)]
    answers = run_concurrently(batcher, requests)
    assert answers == {item: (key, item * 10) for key, item in requests}
    assert all(len(items) <= 3 for _, items in runner.batches)
    for key, items in runner.batches:
        assert all((key == "reid") == (item >= 100) for item in items)
    stats = batcher.stats()
    assert stats.items == len(requests) and stats.batches == len(runner.batches)


def test_a_lone_request_waits_no_longer_than_the_bound():
    batcher = MicroBatcher(Recorder(), max_size=8, max_wait=0.05)
    started = time.perf_counter()
    assert batcher.submit("pose", 1) == ("pose", 10)
    assert time.perf_counter() - started < 0.5


def test_the_next_batch_fills_while_the_model_is_busy():
    """Under load batches grow: requests that arrive while a batch runs wait for it and go together."""
    runner = Recorder()

    def slow(key, items):
        time.sleep(0.3)
        return runner(key, items)

    batcher = MicroBatcher(slow, max_size=8, max_wait=0.01)
    first = threading.Thread(target=batcher.submit, args=("florence", 0))
    first.start()
    time.sleep(0.1)  # the first batch (alone) is running now
    answers = run_concurrently(batcher, [("florence", i) for i in range(1, 4)])
    first.join(5)
    assert answers == {i: ("florence", i * 10) for i in range(1, 4)}
    assert [sorted(items) for _, items in runner.batches] == [[0], [1, 2, 3]]


def test_one_bad_item_fails_alone():
    batcher = MicroBatcher(Recorder(fail_on=2), max_size=4, max_wait=0.5)
    answers = run_concurrently(batcher, [("pose", i) for i in range(4)])
    assert isinstance(answers[2], ValueError) and str(answers[2]) == "bad 2"
    assert [answers[i] for i in (0, 1, 3)] == [("pose", 0), ("pose", 10), ("pose", 30)]


def test_a_runner_that_raises_answers_every_waiting_caller():
    def broken(key, items):
        raise RuntimeError("device lost")

    answers = run_concurrently(MicroBatcher(broken, max_size=4, max_wait=0.5), [("pose", i) for i in range(4)])
    assert all(isinstance(a, RuntimeError) and "device lost" in str(a) for a in answers.values())


@pytest.mark.parametrize("size, wait", [(0, 0.01), (2, -1)])
def test_bad_bounds_are_refused(size, wait):
    with pytest.raises(ValueError):
        MicroBatcher(Recorder(), max_size=size, max_wait=wait)


class Wrapper:
    """infer doubles; infer_batch does too, unless told to fail as a whole."""

    batchable = True

    def __init__(self, batch_fails: Exception | None = None):
        self.batch_fails = batch_fails
        self.batch_calls = 0

    def infer(self, x: int) -> int:
        if x < 0:
            raise ValueError(f"negative {x}")
        return 2 * x

    def infer_batch(self, xs: list[int]) -> list[int]:
        self.batch_calls += 1
        if self.batch_fails is not None or any(x < 0 for x in xs):
            raise self.batch_fails or ValueError("a negative item")
        return [2 * x for x in xs]


def test_infer_many_uses_the_batched_call():
    wrapper = Wrapper()
    assert infer_many(wrapper, [1, 2, 3]) == [2, 4, 6] and wrapper.batch_calls == 1


def test_infer_many_falls_back_to_one_at_a_time_when_the_batch_fails():
    outcomes = infer_many(Wrapper(), [1, -2, 3])
    assert outcomes[0] == 2 and outcomes[2] == 6
    assert isinstance(outcomes[1], ValueError) and "negative -2" in str(outcomes[1])


def test_out_of_memory_is_raised_for_the_cache_to_retry():
    with pytest.raises(MemoryError):
        infer_many(Wrapper(batch_fails=MemoryError("CUDA out of memory")), [1, 2])


def test_wrappers_without_infer_batch_are_called_per_item():
    class Plain:
        def infer(self, x):
            return x + 1

    assert infer_many(Plain(), [1, 2]) == [2, 3]


def test_batching_is_declared_not_discovered():
    class Undeclared(Wrapper):
        batchable = False

    wrapper = Undeclared()
    assert infer_many(wrapper, [1, 2, 3]) == [2, 4, 6] and wrapper.batch_calls == 0


# -- the real families: a batch answers exactly what one call per detection answers ----------------------

BATCHED = ["clothing", "pose", "threat", "reid", "vehicle", "pet", "florence"]


def test_the_batchable_families_declare_it():
    from scripts.fixtures.noop import NoopModel
    from workers.registry import MODELS

    assert sorted(entry.name for entry in MODELS if entry.load_class().batchable) == sorted(BATCHED)
    assert NoopModel.batchable


def detections() -> list[ModelInput]:
    frame = Image.new("RGB", (320, 240))
    for x in range(0, 320, 20):  # some structure so crops differ
        frame.paste((x % 255, 80, 255 - x % 255), (x, 0, x + 10, 240))
    boxes = [(10, 10, 110, 230), (150, 40, 200, 200), (220, 5, 315, 120)]
    return [ModelInput(frame=frame, bbox=box) for box in boxes]


@pytest.mark.parametrize("name", BATCHED)
def test_a_batch_matches_one_call_per_detection(name, tiny_model):
    from workers.registry import REGISTRY

    entry = REGISTRY[name]
    wrapper = entry.load_class()(tiny_model(name), "cpu")
    wrapper.load()
    try:
        batch = detections()
        batched = wrapper.infer_batch(batch)
        single = [wrapper.infer(inputs) for inputs in batch]
    finally:
        wrapper.unload()
    assert len(batched) == len(batch)
    assert_close(batched, single)


def assert_close(got, want, path="answer"):
    """Equal structure and labels; numbers equal to 1e-3 (a batched forward pass may round differently)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), path
        for key in want:
            assert_close(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-3), path
    else:
        assert got == want, path


# -- time limits ---------------------------------------------------------------------------------------------

def test_a_caller_stops_waiting_at_its_timeout_and_its_queued_item_is_dropped():
    from workers.batching import InferenceTimeout

    gate = threading.Event()
    seen: list[int] = []

    def stuck(key, items):
        seen.extend(items)
        gate.wait(5)
        return [i for i in items]

    batcher = MicroBatcher(stuck, max_size=1)
    first = threading.Thread(target=lambda: batcher.submit("pose", 1, timeout=5))
    first.start()
    time.sleep(0.1)  # the first call is running and stuck
    started = time.perf_counter()
    with pytest.raises(InferenceTimeout, match="pose"):
        batcher.submit("pose", 2, timeout=0.2)
    assert time.perf_counter() - started < 1.0
    gate.set()
    first.join(5)
    time.sleep(0.1)
    assert seen == [1], "the timed-out request never reached the model"


def test_inline_batching_runs_in_the_callers_thread():
    where: list[str] = []

    def record(key, items):
        where.append(threading.current_thread().name)
        return items

    batcher = MicroBatcher(record, max_size=4, inline=True)
    assert batcher.submit("pose", 7) == 7
    assert where == [threading.current_thread().name]


# -- the call journal ----------------------------------------------------------------------------------------

def test_the_journal_names_the_calls_a_dead_process_left_open_and_the_ones_it_blamed(tmp_path):
    from workers.journal import CallJournal

    journal = CallJournal(tmp_path / "cpu.0.journal").open()
    journal.started(["a", "b"])
    journal.finished(["a"])
    journal.started(["c"])
    journal.blame(["c"])
    journal.close()
    after = CallJournal(tmp_path / "cpu.0.journal")
    assert sorted(after.unfinished()) == ["b", "c"] and after.blamed() == ["c"]
    after.open()
    assert after.unfinished() == [] and after.blamed() == [], "a new process starts a fresh journal"
