"""The cache benchmark's parts: the synthetic day, Belady's reference, and the JSON report."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_cache.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_cache", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_belady_matches_the_textbook_page_fault_count(bench):
    # The classic reference string with three equal frames: the optimal policy faults 7 times.
    trace = [str(page) for page in (1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5)]
    outcome = bench.replay_belady(trace, budget=3, size={page: 1 for page in "12345"})
    assert (outcome.loads, outcome.hits, outcome.evictions) == (7, 5, 4)


def test_belady_skips_only_models_larger_than_the_budget(bench):
    outcome = bench.replay_belady(["big", "small", "big"], budget=10, size={"big": 11, "small": 4})
    assert (outcome.skips, outcome.loads, outcome.served) == (2, 1, [False, True, False])


def test_synthetic_day_is_seeded_and_mostly_persons(bench):
    day = bench.synthetic_day(300, random.Random(3))
    assert day == bench.synthetic_day(300, random.Random(3))
    kinds = [e.detection_type for e in day]
    assert kinds.count("person") > kinds.count("vehicle") > 0 and kinds.count("animal") > 0
    assert all(a.timestamp <= b.timestamp < 86400 + 3600 for a, b in zip(day, day[1:]))
    trace = bench.request_trace(day, ())
    suspicious = sum(1 for e in day if e.frames)
    assert [name for _, name in trace].count("action") == suspicious > 0


def test_report_compares_each_policy_with_its_belady_row(bench, tmp_path):
    report = tmp_path / "bench.json"
    bench.main(seed=1, episodes=150, budgets="1,4", idle_seconds=0, scene=[], json_path=report)
    data = json.loads(report.read_text())
    assert [b["budget_gb"] for b in data["budgets"]] == [1.0, 4.0]
    for budget in data["budgets"]:
        outcomes = budget["outcomes"]
        assert set(outcomes) == {"ModelCache", "Belady/same", "plain LRU", "Belady"}
        for policy in outcomes.values():
            assert policy["hits"] + policy["loads"] + policy["skips"] == data["requests"]
        assert outcomes["Belady/same"]["served_rate"] == outcomes["ModelCache"]["served_rate"]
        assert outcomes["ModelCache"]["loads_vs_belady"] >= 1.0  # nothing beats the offline optimum here
