"""Replay a synthetic day of camera events against ModelCache and Belady's offline optimum, per memory budget.

Events are planned into model requests by workers.registry.plan_models; models are fakes charged a size (the
registry's footprints measured on an H100, or the seed design's guesses with --estimates seed), so this
measures the eviction policy (requests served, loads avoided), not load speed. The headline comparison is
against Belady serving every request whose model fits the budget at all.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's packages, even where another one is installed

from model_cache import ModelCache, ModelSkipped, ModelSpec  # noqa: E402
from workers.registry import REGISTRY, plan_models  # noqa: E402

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

# What each model is charged in the replay, MB: the registry's footprints measured at full size on an H100, or
# the seed design's guesses (up to 30x bigger; the cache charges an estimate until a load measures it).
SEED_GUESSES_MB = {
    "threat": 400, "pose": 300, "clothing": 800, "age_gender": 500, "vehicle": 1500, "pet": 200, "reid": 100,
    "depth": 150, "action": 1500, "florence": 1200, "clip": 800,
    "face": REGISTRY["face"].estimated_mb,  # not in the seed's table: charged the registry's figure
}
ESTIMATES_MB: dict[str, dict[str, float]] = {
    "registry": {name: entry.estimated_mb for name, entry in REGISTRY.items()},
    "seed": SEED_GUESSES_MB,
}


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
    """How one policy fared on one trace and budget: per request, whether it was served and whether it hit."""

    names: list[str] = field(repr=False)
    served: list[bool] = field(default_factory=list, repr=False)
    hit: list[bool] = field(default_factory=list, repr=False)
    evictions: int = 0
    bytes_loaded: int = 0

    def record(self, served: bool, hit: bool = False) -> None:
        self.served.append(served)
        self.hit.append(hit)

    @property
    def requests(self) -> int:
        return len(self.served)

    @property
    def hits(self) -> int:
        return sum(self.hit)

    @property
    def loads(self) -> int:
        return sum(self.served) - self.hits

    @property
    def skips(self) -> int:
        return self.requests - sum(self.served)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    @property
    def served_rate(self) -> float:
        return sum(self.served) / self.requests if self.requests else 0.0

    def per_model(self) -> dict[str, dict[str, int]]:
        """Requests, hits and served requests of each model asked for."""
        tally: dict[str, dict[str, int]] = {}
        for name, served, hit in zip(self.names, self.served, self.hit):
            counts = tally.setdefault(name, {"requests": 0, "hits": 0, "served": 0})
            counts["requests"] += 1
            counts["hits"] += hit
            counts["served"] += served
        return tally

    def as_dict(self) -> dict:
        return {
            "requests": self.requests, "hits": self.hits, "loads": self.loads, "skips": self.skips,
            "evictions": self.evictions, "bytes_loaded": self.bytes_loaded,
            "hit_rate": round(self.hit_rate, 4), "served_rate": round(self.served_rate, 4),
            "per_model": {
                name: counts | {"hit_rate": round(counts["hits"] / counts["requests"], 4)}
                for name, counts in sorted(self.per_model().items())
            },
        }


class FakeModelClock:
    """The replay's clock: event time, so idle release and the demand half-life see the day's gaps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def replay_model_cache(
    trace: list[tuple[float, str]], budget: int, sizes_mb: dict[str, float], *, idle_seconds: float | None = None
) -> Outcome:
    """Run the trace through ModelCache with fake loaders charged sizes_mb, at the registry's priorities."""
    clock = FakeModelClock()
    cache = ModelCache(budget, idle_seconds=idle_seconds, clock=clock, measure=lambda load: (load(), None),
                       release=lambda: None)
    specs = {
        name: ModelSpec(name, sizes_mb[name], entry.priority, loader=lambda name=name: name)
        for name, entry in REGISTRY.items()
    }
    outcome = Outcome([name for _, name in trace])
    for timestamp, name in trace:
        if timestamp != clock.now:
            clock.now = timestamp
            cache.release_idle()  # the worker's heartbeat, at most once per event
        try:
            outcome.record(True, cache.get(specs[name]).hit)
        except ModelSkipped:
            outcome.record(False)
    outcome.evictions, outcome.bytes_loaded = cache.stats.evictions, cache.stats.bytes_loaded
    return outcome


def replay_lru(names: list[str], budget: int, size: dict[str, int]) -> Outcome:
    """Plain LRU by bytes, blind to priority and demand: serves every request whose model fits the budget."""
    held: OrderedDict[str, None] = OrderedDict()  # least recently used first
    outcome = Outcome(names)
    for name in names:
        if name in held:
            held.move_to_end(name)
            outcome.record(True, hit=True)
            continue
        if size[name] > budget:
            outcome.record(False)
            continue
        while size[name] > budget - sum(size[n] for n in held):
            held.popitem(last=False)
            outcome.evictions += 1
        held[name] = None
        outcome.bytes_loaded += size[name]
        outcome.record(True)
    return outcome


def replay_belady(names: list[str], budget: int, size: dict[str, int], serve: list[bool] | None = None) -> Outcome:
    """Belady's rule offline, serving every request whose model fits the budget alone: on a miss evict the
    held models whose next use is furthest away.

    Like the cache, it then spares any victim a later, bigger one made needless. Optimal for equal sizes;
    with sizes (this size-aware variant) it is the classic strong reference rather than a proven optimum, and
    an online rule can beat it. Priorities are ignored. `serve` restricts it to chosen requests (the others
    count as skips and are not uses).
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
    outcome = Outcome(names)
    for i, name in enumerate(names):
        if not serve[i]:
            outcome.record(False)
            continue
        if name in held:
            outcome.record(True, hit=True)
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
            outcome.bytes_loaded += size[name]
            outcome.record(True)
        held[name] = next_use[i]
    return outcome


POLICIES = {
    "ModelCache": "this cache: evicts the models least worth keeping (priority weight x fading demand / bytes)",
    "LRU": "plain least recently used by bytes, blind to priority and demand",
    "Belady": "offline optimum (size-aware, furthest next use first) serving every request that fits the budget",
}
HIT_RATIO_FLOOR = 0.9  # the policy must reach at least 0.9x the hit rate of Belady serving every request that fits


def acceptance(cache: Outcome, belady: Outcome) -> dict:
    """Whether the cache served every request Belady served and reached HIT_RATIO_FLOOR of its hit rate."""
    served_all = all(ours or not theirs for ours, theirs in zip(cache.served, belady.served))
    ratio = cache.hit_rate / belady.hit_rate if belady.hit_rate else None
    return {"served_all": served_all, "hit_ratio": None if ratio is None else round(ratio, 4),
            "ok": served_all and (ratio is None or ratio >= HIT_RATIO_FLOOR)}


def run(trace: list[tuple[float, str]], budgets_gb: list[float], sizes_mb: dict[str, float],
        idle_seconds: float | None = None) -> list[dict]:
    """Every policy at every budget, with the acceptance of ModelCache against Belady."""
    names = [name for _, name in trace]
    sizes = {name: int(mb * MB) for name, mb in sizes_mb.items()}
    rows = []
    for budget_gb in budgets_gb:
        budget = int(budget_gb * GB)
        outcomes = {
            "ModelCache": replay_model_cache(trace, budget, sizes_mb, idle_seconds=idle_seconds),
            "LRU": replay_lru(names, budget, sizes),
            "Belady": replay_belady(names, budget, sizes),
        }
        rows.append({"budget_gb": budget_gb, "outcomes": outcomes,
                     "acceptance": acceptance(outcomes["ModelCache"], outcomes["Belady"])})
    return rows


def print_report(events: list[SyntheticEvent], trace: list[tuple[float, str]], rows: list[dict],
                 estimates: str, sizes_mb: dict[str, float], scene: tuple[str, ...]) -> None:
    kinds = {k: sum(e.detection_type == k for e in events) for k in ("person", "vehicle", "animal")}
    per_model = {name: sum(n == name for _, n in trace) for name in REGISTRY}
    asked = [name for name, count in per_model.items() if count]
    console.print(
        f"{len(events)} events ({', '.join(f'{k} {v}' for k, v in kinds.items())}; "
        f"{sum(bool(e.frames) for e in events)} suspicious with frames), {len(trace)} model requests: "
        + ", ".join(f"{name} {per_model[name]}" for name in asked)
    )
    console.print(f"sizes ({estimates} estimates{', scene ' + ' '.join(scene) if scene else ''}), MB: "
                  + ", ".join(f"{name} {sizes_mb[name]:g}" for name in asked))
    table = Table("budget", "policy", "served", "hit rate", "÷ Belady", "loads", "GB loaded", "evictions", "check",
                  title="model cache replay",
                  caption=f"÷ Belady: hit rate over Belady's; check: serves all Belady serves and ÷ Belady ≥ "
                          f"{HIT_RATIO_FLOOR}")
    for row in rows:
        outcomes, belady = row["outcomes"], row["outcomes"]["Belady"]
        for index, (policy, outcome) in enumerate(outcomes.items()):
            check = ""
            if policy == "ModelCache":
                check = "ok" if row["acceptance"]["ok"] else "[red]FAIL[/red]"
            table.add_row(
                f"{row['budget_gb']:g} GB" if index == 0 else "",
                policy,
                f"{outcome.served_rate:.1%}",
                f"{outcome.hit_rate:.1%}",
                f"{outcome.hit_rate / belady.hit_rate:.2f}" if belady.hit_rate else "",
                str(outcome.loads),
                f"{outcome.bytes_loaded / GB:.1f}",
                str(outcome.evictions),
                check,
                end_section=index == len(outcomes) - 1,
            )
    console.print(table)
    for policy, meaning in POLICIES.items():
        console.print(f"  [bold]{policy}[/bold]: {meaning}")

    models = Table("model", "priority", *(f"{row['budget_gb']:g} GB" for row in rows),
                   title="hit rate per model, %: ModelCache / Belady",
                   caption="skip n: requests ModelCache did not serve (the model is bigger than the budget)")
    for name in asked:
        cells = []
        for row in rows:
            ours = row["outcomes"]["ModelCache"].per_model()[name]
            theirs = row["outcomes"]["Belady"].per_model()[name]
            cell = f"{100 * ours['hits'] / ours['requests']:.0f} / {100 * theirs['hits'] / theirs['requests']:.0f}"
            if ours["served"] < ours["requests"]:
                cell += f" skip {ours['requests'] - ours['served']}"
            cells.append(cell)
        models.add_row(name, REGISTRY[name].priority.name, *cells)
    console.print(models)


def report_json(seed: int, episodes: int, estimates: str, sizes_mb: dict[str, float], scene: tuple[str, ...],
                events: list[SyntheticEvent], trace: list[tuple[float, str]], rows: list[dict]) -> dict:
    return {
        "seed": seed,
        "episodes": episodes,
        "estimates": estimates,
        "sizes_mb": sizes_mb,
        "scene": list(scene),
        "events": len(events),
        "requests": len(trace),
        "policies": POLICIES,
        "acceptance": {
            "rule": f"ModelCache serves every request Belady serves and its hit rate is at least "
                    f"{HIT_RATIO_FLOOR}x Belady's",
            "ok": all(row["acceptance"]["ok"] for row in rows),
        },
        "budgets": [
            {
                "budget_gb": row["budget_gb"],
                "acceptance": row["acceptance"],
                "outcomes": {policy: outcome.as_dict() for policy, outcome in row["outcomes"].items()},
            }
            for row in rows
        ],
    }


def write_figure(report: dict, path: Path) -> Path:
    """A PNG of the report: hit rate and served rate against the memory budget, one line per policy."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot

    budgets = [row["budget_gb"] for row in report["budgets"]]
    figure, (hits, served) = pyplot.subplots(1, 2, figsize=(10, 4), sharex=True, constrained_layout=True)
    for policy in report["policies"]:
        for axes, key in ((hits, "hit_rate"), (served, "served_rate")):
            axes.plot(budgets, [100 * row["outcomes"][policy][key] for row in report["budgets"]], marker="o",
                      label=policy)
    hits.set(title="hit rate (requests served by a resident model)", ylabel="%", xlabel="memory budget, GB")
    served.set(title="served rate (requests whose model fit)", ylabel="%", xlabel="memory budget, GB")
    for axes in (hits, served):
        axes.grid(alpha=0.3)
        axes.legend()
    scene = f", scene models {'+'.join(report['scene'])}" if report["scene"] else ""
    figure.suptitle(f"model cache replay: {report['events']} events, {report['requests']} model requests, seed "
                    f"{report['seed']}, {report['estimates']} sizes{scene}", fontsize=10)
    figure.savefig(path, dpi=80)
    pyplot.close(figure)
    return path


def main(
    seed: int = typer.Option(7, help="RNG seed for the synthetic day"),
    episodes: int = typer.Option(700, help="Activity episodes in the day (each a burst of detections)"),
    budgets: str = typer.Option("1,2,3,3.5,4,5,6", help="Memory budgets in GB, comma-separated"),
    estimates: str = typer.Option("registry", help="Model sizes: 'registry' (measured on an H100) or 'seed' (the "
                                                  "seed design's guesses)"),
    idle_seconds: float = typer.Option(0, help="Release models idle this long (0: never), as the worker's heartbeat"),
    scene: list[str] = typer.Option([], "--scene", help="Scene model to run per person event (florence, clip)"),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the report as JSON here, and a PNG of hit "
                                                               "and served rate against budget beside it (.png)"),
    check: bool = typer.Option(False, "--check", help="Exit 1 unless every budget meets the acceptance"),
) -> None:
    """Served requests and hit rate of ModelCache against Belady serving every request that fits, per budget."""
    if estimates not in ESTIMATES_MB:
        raise typer.BadParameter(f"--estimates must be one of {sorted(ESTIMATES_MB)}")
    started = time.perf_counter()
    sizes_mb = ESTIMATES_MB[estimates]
    events = synthetic_day(episodes, random.Random(seed))
    trace = request_trace(events, tuple(scene))
    rows = run(trace, [float(b) for b in budgets.split(",")], sizes_mb, idle_seconds or None)
    print_report(events, trace, rows, estimates, sizes_mb, tuple(scene))
    if json_path is not None:
        report = report_json(seed, episodes, estimates, sizes_mb, tuple(scene), events, trace, rows)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2))
        console.print(f"wrote {json_path} and {write_figure(report, json_path.with_suffix('.png'))}")
    console.print(f"[dim]{time.perf_counter() - started:.1f} s[/dim]")
    if check and not all(row["acceptance"]["ok"] for row in rows):
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
