"""Replay a synthetic day of camera events against ModelCache and Belady's offline optimum, per memory budget.

Events are planned into model requests by workers.registry.plan_models; models are fakes charged their
registry estimates, so this measures the eviction policy (loads avoided), not load speed.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from model_cache import ModelCache, ModelSkipped, ModelSpec, Priority
from workers.registry import REGISTRY, plan_models

console = Console(width=max(110, shutil.get_terminal_size((110, 24)).columns))
MB = 1024**2
GB = 1024**3

# Relative rate of activity episodes by hour of day (quiet nights, school run, evening return).
HOURLY_ACTIVITY = (
    0.2, 0.15, 0.1, 0.1, 0.1, 0.2, 0.5, 1.0, 1.2, 0.9, 0.8, 0.9,
    1.0, 0.9, 0.9, 1.0, 1.3, 1.5, 1.3, 1.0, 0.8, 0.6, 0.4, 0.3,
)
NIGHT_HOURS = frozenset({21, 22, 23, 0, 1, 2, 3, 4, 5})
# What an episode is, by day and by night: mostly people by day, wildlife and pets at night.
EPISODE_MIX = {
    "day": {"person": 0.62, "vehicle": 0.30, "animal": 0.08},
    "night": {"person": 0.35, "vehicle": 0.20, "animal": 0.45},
}
# Mean detections per episode (someone walking up the drive triggers several frames in a row).
BURST_MEAN = {"person": 4.0, "vehicle": 2.5, "animal": 2.0}
BURST_GAP_SECONDS = (2.0, 15.0)
FACE_VISIBLE_SHARE = 0.35
SUSPICIOUS_SHARE = {"day": 0.01, "night": 0.06}  # of person episodes; these carry a frame buffer
ACTION_FRAMES = 8
CAMERAS = ("front_door", "driveway", "backyard", "side_gate")


@dataclass(frozen=True)
class SyntheticEvent:
    """The fields plan_models() reads, plus when and where."""

    timestamp: float
    camera_id: str
    detection_type: str
    face_visible: bool = False
    suspicious_score: float = 0.0
    frames: tuple[str, ...] = ()


def synthetic_day(episodes: int, rng: random.Random) -> list[SyntheticEvent]:
    """A day of detections: episodes spread by HOURLY_ACTIVITY, each a burst of events on one camera."""
    events: list[SyntheticEvent] = []
    hours = rng.choices(range(24), weights=HOURLY_ACTIVITY, k=episodes)
    for hour in hours:
        period = "night" if hour in NIGHT_HOURS else "day"
        mix = EPISODE_MIX[period]
        kind = rng.choices(list(mix), weights=list(mix.values()))[0]
        suspicious = kind == "person" and rng.random() < SUSPICIOUS_SHARE[period]
        camera = rng.choice(CAMERAS)
        t = hour * 3600 + rng.uniform(0, 3600)
        for _ in range(1 + int(rng.expovariate(1 / (BURST_MEAN[kind] - 1)))):
            events.append(SyntheticEvent(
                timestamp=t, camera_id=camera, detection_type=kind,
                face_visible=kind == "person" and rng.random() < FACE_VISIBLE_SHARE,
                suspicious_score=rng.uniform(55, 95) if suspicious else rng.uniform(0, 40),
                frames=("frame",) * ACTION_FRAMES if suspicious else (),
            ))
            t += rng.uniform(*BURST_GAP_SECONDS)
    return sorted(events, key=lambda e: e.timestamp)


def request_trace(events: list[SyntheticEvent], scene_models: tuple[str, ...]) -> list[tuple[float, str]]:
    """(time, model) for every model each event plans, in the order the worker would ask for them."""
    return [(e.timestamp, name) for e in events for name in plan_models(e, scene_models)]


@dataclass
class Outcome:
    """How one policy fared on one trace and budget."""

    requests: int = 0
    hits: int = 0
    loads: int = 0
    skips: int = 0
    evictions: int = 0
    bytes_loaded: int = 0
    skipped_models: dict[str, int] = field(default_factory=dict)
    served: list[bool] = field(default_factory=list, repr=False)  # per request: answered (hit or load)?

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    @property
    def served_rate(self) -> float:
        return (self.hits + self.loads) / self.requests if self.requests else 0.0


class FakeModelClock:
    """The replay's clock: event time, so idle release sees the day's gaps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def replay_model_cache(
    trace: list[tuple[float, str]], budget: int, *, ignore_priorities: bool = False, idle_seconds: float | None = None
) -> Outcome:
    """Run the trace through ModelCache with fake loaders charged their registry estimates."""
    clock = FakeModelClock()
    cache = ModelCache(budget, idle_seconds=idle_seconds, clock=clock, measure=lambda load: (load(), None),
                       release=lambda: None)
    specs = {
        name: ModelSpec(name, entry.estimated_mb, Priority.MEDIUM if ignore_priorities else entry.priority,
                        loader=lambda name=name: name)
        for name, entry in REGISTRY.items()
    }
    outcome = Outcome()
    for timestamp, name in trace:
        if timestamp != clock.now:
            clock.now = timestamp
            cache.release_idle()  # the worker's heartbeat, at most once per event
        outcome.requests += 1
        try:
            cache.get(specs[name])
            outcome.served.append(True)
        except ModelSkipped:
            outcome.served.append(False)
            outcome.skipped_models[name] = outcome.skipped_models.get(name, 0) + 1
    stats = cache.stats
    outcome.hits, outcome.loads, outcome.skips = stats.hits, stats.loads, stats.skips
    outcome.evictions, outcome.bytes_loaded = stats.evictions, stats.bytes_loaded
    return outcome


def registry_sizes() -> dict[str, int]:
    """Bytes each model is charged in the replay: its registry estimate."""
    return {name: int(entry.estimated_mb * MB) for name, entry in REGISTRY.items()}


def replay_belady(names: list[str], budget: int, size: dict[str, int], serve: list[bool] | None = None) -> Outcome:
    """Belady's rule offline: on a miss evict the held models whose next use is furthest away.

    Like the cache, it then spares any victim a later, bigger one made needless. Optimal for equal
    sizes; with sizes it is the classic strong reference rather than a proven optimum. Priorities are
    ignored: this is what any eviction order could hope for with the same budget. `serve` restricts it
    to the requests another policy served (the others count as skips and are not uses).
    """
    serve = serve or [size[name] <= budget for name in names]
    never = len(names)
    next_use = [never] * len(names)
    upcoming: dict[str, int] = {}
    for i in range(len(names) - 1, -1, -1):
        if serve[i]:
            next_use[i] = upcoming.get(names[i], never)
            upcoming[names[i]] = i
    held: dict[str, int] = {}  # name -> index of its next use
    outcome = Outcome(served=list(serve))
    for i, name in enumerate(names):
        outcome.requests += 1
        if not serve[i]:
            outcome.skips += 1
            outcome.skipped_models[name] = outcome.skipped_models.get(name, 0) + 1
            continue
        if name in held:
            outcome.hits += 1
        else:
            free = budget - sum(size[n] for n in held)
            victims = []
            for victim in sorted(held, key=held.__getitem__, reverse=True):
                if size[name] <= free:
                    break
                victims.append(victim)
                free += size[victim]
            for victim in reversed(victims[:-1]):
                if size[name] <= free - size[victim]:
                    victims.remove(victim)
                    free -= size[victim]
            for victim in victims:
                del held[victim]
            outcome.evictions += len(victims)
            outcome.loads += 1
            outcome.bytes_loaded += size[name]
        held[name] = next_use[i]
    return outcome


POLICIES = {
    "ModelCache": "LRU within priority (this cache); skips what would evict a higher priority",
    "Belady/same": "offline optimum serving exactly the requests ModelCache served",
    "plain LRU": "ModelCache with every priority equal: serves everything that fits the budget",
    "Belady": "offline optimum serving every request that fits the budget",
}
# Which Belady row each policy's loads are compared with.
COMPARED_WITH = {"ModelCache": "Belady/same", "plain LRU": "Belady"}


def run(trace: list[tuple[float, str]], budgets_gb: list[float], idle_seconds: float | None) -> list[dict]:
    names = [name for _, name in trace]
    sizes = registry_sizes()
    rows = []
    for budget_gb in budgets_gb:
        budget = int(budget_gb * GB)
        cache = replay_model_cache(trace, budget, idle_seconds=idle_seconds)
        outcomes = {
            "ModelCache": cache,
            "Belady/same": replay_belady(names, budget, sizes, serve=cache.served),
            "plain LRU": replay_model_cache(trace, budget, ignore_priorities=True, idle_seconds=idle_seconds),
            "Belady": replay_belady(names, budget, sizes),
        }
        rows.append({"budget_gb": budget_gb, "outcomes": outcomes})
    return rows


def loads_ratio(policy: str, outcomes: dict[str, Outcome]) -> float | None:
    """Loads of a policy over loads of its Belady reference (1.0 is optimal)."""
    reference = outcomes.get(COMPARED_WITH.get(policy, ""))
    if reference is None or not reference.loads:
        return None
    return outcomes[policy].loads / reference.loads


def print_report(events: list[SyntheticEvent], trace: list[tuple[float, str]], rows: list[dict]) -> None:
    kinds = {k: sum(e.detection_type == k for e in events) for k in ("person", "vehicle", "animal")}
    per_model = {name: sum(n == name for _, n in trace) for name in REGISTRY}
    console.print(
        f"{len(events)} events ({', '.join(f'{k} {v}' for k, v in kinds.items())}; "
        f"{sum(bool(e.frames) for e in events)} suspicious with frames), {len(trace)} model requests: "
        + ", ".join(f"{name} {count}" for name, count in per_model.items() if count)
    )
    table = Table("budget", "policy", "hit rate", "served", "loads", "skips", "GB loaded", "÷ Belady",
                  title="model cache replay", caption="÷ Belady: loads over the loads of its Belady row below it")
    for row in rows:
        outcomes = row["outcomes"]
        for index, (policy, outcome) in enumerate(outcomes.items()):
            ratio = loads_ratio(policy, outcomes)
            table.add_row(
                f"{row['budget_gb']:g} GB" if index == 0 else "",
                policy,
                f"{outcome.hit_rate:.1%}",
                f"{outcome.served_rate:.1%}",
                str(outcome.loads),
                str(outcome.skips),
                f"{outcome.bytes_loaded / GB:.1f}",
                "" if ratio is None else f"{ratio:.2f}",
                end_section=index == len(outcomes) - 1,
            )
    console.print(table)
    for policy, meaning in POLICIES.items():
        console.print(f"  [bold]{policy}[/bold]: {meaning}")
    for row in rows:
        skipped = row["outcomes"]["ModelCache"].skipped_models
        if skipped:
            console.print(f"ModelCache skips at {row['budget_gb']:g} GB: "
                          + ", ".join(f"{name} {count}" for name, count in sorted(skipped.items())))


def report_json(seed: int, events: list[SyntheticEvent], trace: list[tuple[float, str]], rows: list[dict]) -> dict:
    return {
        "seed": seed,
        "events": len(events),
        "requests": len(trace),
        "policies": POLICIES,
        "budgets": [
            {
                "budget_gb": row["budget_gb"],
                "outcomes": {
                    policy: {k: v for k, v in asdict(outcome).items() if k != "served"} | {
                        "hit_rate": round(outcome.hit_rate, 4),
                        "served_rate": round(outcome.served_rate, 4),
                        "loads_vs_belady": loads_ratio(policy, row["outcomes"]),
                    }
                    for policy, outcome in row["outcomes"].items()
                },
            }
            for row in rows
        ],
    }


def main(
    seed: int = typer.Option(7, help="RNG seed for the synthetic day"),
    episodes: int = typer.Option(700, help="Activity episodes in the day (each a burst of detections)"),
    budgets: str = typer.Option("1,2,3,4,6", help="Memory budgets in GB, comma-separated"),
    idle_seconds: float = typer.Option(0, help="Release models idle this long (0: never), as the worker's heartbeat"),
    scene: list[str] = typer.Option([], "--scene", help="Scene model to run per person event (florence, clip)"),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the report as JSON here"),
) -> None:
    """Hit rate and loads of ModelCache against Belady's optimum over one synthetic day."""
    started = time.perf_counter()
    events = synthetic_day(episodes, random.Random(seed))
    trace = request_trace(events, tuple(scene))
    rows = run(trace, [float(b) for b in budgets.split(",")], idle_seconds or None)
    print_report(events, trace, rows)
    if json_path is not None:
        json_path.write_text(json.dumps(report_json(seed, events, trace, rows), indent=2))
        console.print(f"wrote {json_path}")
    console.print(f"[dim]{time.perf_counter() - started:.1f} s[/dim]")


if __name__ == "__main__":
    typer.run(main)
