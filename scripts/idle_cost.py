"""What an idle pool costs: CPU seconds of the launcher and its workers, and Redis commands, while no event comes.

Starts its own redis-server and a pool as `python -m workers start` does (router and one cpu.0 worker), lets it
settle (warm-up, preload), then measures for --seconds. README "Reliability" quotes it for the workers' wait between
takes (tasks/celery_internals/taking.py).

    python scripts/idle_cost.py --settle 20 --seconds 60 [--json var/idle-cost.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.local_pool import LocalPool, RedisServer, cpu_seconds, descendants  # noqa: E402


def calls(stats: dict) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}


def measure(models_dir: Path, settle: float, seconds: float) -> dict:
    server = RedisServer().start()
    with tempfile.TemporaryDirectory(prefix="idle-cost-") as logs:
        pool = LocalPool(server.url, models_dir, Path(logs), env={"METRICS_PORT_BASE": "0"})
        try:
            pool.start()
            time.sleep(settle)
            redis = server.client()
            pids = [pool.process.pid, *descendants(pool.process.pid)]
            used_before = {pid: cpu_seconds(pid) for pid in pids}
            commands_before = calls(redis.info("commandstats"))
            started = time.monotonic()
            time.sleep(seconds)
            wall = time.monotonic() - started
            used = sum(cpu_seconds(pid) - used_before[pid] for pid in pids)
            commands = {name: count - commands_before.get(name, 0)
                        for name, count in calls(redis.info("commandstats")).items()}
        finally:
            pool.stop()
            server.cleanup()
    busiest = dict(sorted(commands.items(), key=lambda item: -item[1])[:6])
    return {"seconds": round(wall, 1), "processes": len(pids), "cpu_seconds": round(used, 2),
            "cpu_percent_of_a_core": round(100 * used / wall, 2),
            "redis_commands_per_second": round(sum(commands.values()) / wall, 1),
            "busiest_commands": busiest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=20.0, help="seconds before measuring")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds measured")
    parser.add_argument("--models-dir", type=Path, default=REPO / "var" / "tiny-models")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    report = measure(options.models_dir, options.settle, options.seconds)
    print(json.dumps(report, indent=2))
    if options.json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
