"""What preloading the resident models costs a device worker at start and gains its first event.

Starts a pool (its own redis-server, one router and one cpu.0 device worker) with PRELOAD_MODELS empty and with
its default (`residents`), alternating, and for each: seconds from launch until the workers answer a ping, until
the device worker says it is ready (warm-up and preloads done), then the first person event's end-to-end time and
its scene models' load time.

    python scripts/preload_figures.py --rounds 3                      # tiny models (var/tiny-models)
    python scripts/preload_figures.py --models-dir DIR --gpus 0       # real or full-size weights on a GPU
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scripts.fixtures.sample_events import person_event  # noqa: E402
from tasks.local_pool import LocalPool, RedisServer  # noqa: E402
from workers.state import WORKER_STATE_PREFIX  # noqa: E402

app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])
SETTINGS = {"none": "", "residents": "residents"}


def device_ready(client: Any, timeout: float) -> dict[str, Any]:
    """The device worker's published state once it says it is ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for key in client.scan_iter(match=f"{WORKER_STATE_PREFIX}*"):
            raw = client.get(key)
            state = json.loads(raw) if raw else {}
            if state.get("ready"):
                return state
        time.sleep(0.05)
    raise RuntimeError(f"no device worker was ready within {timeout}s")


def one_start(preload: str, models_dir: Path, gpus: str, round_number: int, timeout: float) -> dict[str, Any]:
    server = RedisServer().start()
    log_dir = Path(tempfile.mkdtemp(prefix="mz-preload-"))
    pool = LocalPool(server.url, models_dir, log_dir, gpus=gpus,
                     env={"PRELOAD_MODELS": SETTINGS[preload], "METRICS_PORT_BASE": "0"})
    client = server.client()
    try:
        started = time.monotonic()
        pool.start(expected_workers=2, timeout=timeout)
        answering = time.monotonic() - started
        state = device_ready(client, timeout)
        ready = time.monotonic() - started
        sent = time.monotonic()
        result = pool.client.enrich(person_event(f"preload-{preload}-{round_number}"), timeout=timeout)
        first_event = time.monotonic() - sent
        records = result["models"]
        return {"preload": preload, "answering_s": round(answering, 2), "ready_s": round(ready, 2),
                "held_at_ready": [m["name"] for m in state.get("models", [])],
                "first_event_s": round(first_event, 3), "status": result["status"],
                "scene_load_ms": {m: records[m]["load_ms"] for m in ("florence", "clip") if m in records},
                "all_load_ms": round(sum(r["load_ms"] for r in records.values()), 1)}
    finally:
        client.close()
        pool.stop()
        server.cleanup()


@app.command()
def main(rounds: int = typer.Option(3, min=1), models_dir: Path = typer.Option(REPO / "var" / "tiny-models"),
         gpus: str = typer.Option("none"), timeout: float = typer.Option(300.0),
         report: Path = typer.Option(REPO / "var" / "preload" / "report.json")) -> None:
    """Alternate starts without and with the residents preloaded; print medians, write every run."""
    runs = []
    for number in range(rounds):
        for preload in ("none", "residents"):
            run = one_start(preload, models_dir, gpus, number, timeout)
            typer.echo(json.dumps(run))
            runs.append(run)
    medians = {}
    for preload in ("none", "residents"):
        mine = [r for r in runs if r["preload"] == preload]
        medians[preload] = {key: round(statistics.median(r[key] for r in mine), 3)
                            for key in ("answering_s", "ready_s", "first_event_s", "all_load_ms")}
        medians[preload]["scene_load_ms"] = {m: round(statistics.median(r["scene_load_ms"].get(m, 0) for r in mine), 1)
                                             for m in ("florence", "clip")}
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"models_dir": str(models_dir), "gpus": gpus, "runs": runs, "medians": medians},
                                 indent=2) + "\n")
    typer.echo(json.dumps(medians, indent=2))


if __name__ == "__main__":
    app()
