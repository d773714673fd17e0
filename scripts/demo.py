"""The demo: a loopback redis-server, tiny models, a router and a device worker, and a tour of sample events."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts.fixtures, and this checkout
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")

from scripts.fixtures.sample_events import demo_events  # noqa: E402
from scripts.fixtures.weights import NotGenerated, write_generated  # noqa: E402
from tasks.local_pool import LocalPool, RedisServer  # noqa: E402
from workers.registry import REGISTRY  # noqa: E402

console = Console()
REPO = Path(__file__).resolve().parents[1]


def show(title: str, result: dict) -> None:
    colour = {"complete": "green", "partial": "yellow", "rejected": "red"}[result["status"]]
    console.rule(f"[bold]{title}[/bold]  [{colour}]{result['status']}[/{colour}]  ({result['event_id']})")
    if result["status"] == "rejected":
        console.print(result["errors"])
        return
    table = Table("model", "status", "worker", "cache hit", "load ms", "infer ms", "error")
    for name, record in result["models"].items():
        table.add_row(name, record["status"], record.get("worker") or "-", str(record["cache_hit"]),
                      f"{record['load_ms']:.0f}", f"{record['infer_ms']:.0f}", record.get("error") or "")
    console.print(table)
    console.print(f"context attributes: {result['context_attributes']}   timings: {result['timings']}")
    console.print(Panel(result["prompt"] or "(no prompt)", title="Nemotron prompt", expand=False))


def main(
    models_dir: Path = typer.Option(Path(os.environ.get("MODELS_DIR", REPO / "var" / "demo-models")),
                                    help="Model weights; tiny ones are generated there when missing"),
    gpus: str = typer.Option("auto", help="auto, none, or GPU indices like 0,1"),
    json_out: Path | None = typer.Option(None, "--json", help="Also write every result to this file"),
    keep: bool = typer.Option(False, help="Keep Redis and the workers running until Ctrl-C, to inspect them"),
) -> None:
    """Run the whole pool locally and enrich a handful of sample events."""
    console.print(f"[bold]1/4[/bold] model weights in {models_dir}")
    for entry in REGISTRY.values():
        with console.status(f"generating tiny {entry.name} (skipped if present)"):
            try:
                write_generated(entry, models_dir)
            except NotGenerated as exc:  # someone's own weights: never replaced with random ones
                console.print(f"[red]{exc}[/red]")
                raise typer.Exit(2) from None
    console.print("[bold]2/4[/bold] starting redis-server on a free loopback port")
    server = RedisServer().start()
    pool = LocalPool(server.url, models_dir, REPO / "var" / "demo-logs", gpus=gpus)
    results = []
    try:
        console.print(f"[bold]3/4[/bold] starting workers (logs: {pool.log_path})")
        with console.status("waiting for the router and device workers"):
            pool.start()
        console.print(f"[bold]4/4[/bold] submitting sample events to {server.url}")
        stamp = time.strftime("%H%M%S")
        for title, event in demo_events(prefix=f"demo-{stamp}"):
            started = time.perf_counter()
            with console.status(f"enriching: {title}"):
                result = pool.client.enrich(event, timeout=600)
            show(f"{title}  [{time.perf_counter() - started:.1f}s]", result)
            results.append(result)
        loaded = pool.client.loaded_models()
        for worker, state in loaded.items():
            names = [m["name"] for m in state.get("models", [])]
            console.print(f"[bold]{worker}[/bold] holds {names or 'no models'}")
        if keep:
            console.print(f"Pool running. Try: redis-cli -p {server.port} GET enrichment:{results[0]['event_id']}\n"
                          f"  REDIS_URL={server.url} celery -A tasks inspect loaded_models\nCtrl-C to stop.")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        pool.stop()
        server.cleanup()
    if json_out:
        json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    typer.run(main)
