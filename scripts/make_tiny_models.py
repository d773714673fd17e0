"""Write randomly initialised models in the real on-disk formats: tiny for tests and the demo, or full-size."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts.fixtures, and this checkout
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")

from scripts.fixtures.weights import write_generated  # noqa: E402
from workers.model_files import is_complete, model_dir  # noqa: E402
from workers.registry import REGISTRY  # noqa: E402

console = Console()


def main(
    models_dir: Path = typer.Option(Path(os.environ.get("MODELS_DIR", "models")), help="Target (MODELS_DIR)"),
    only: list[str] = typer.Option([], "--only", help="Model name; repeat for several (default: all)"),
    full_size: bool = typer.Option(False, "--full-size", help="Real architectures with random weights (GPU sizing)"),
    force: bool = typer.Option(False, help="Rewrite models that are already complete"),
) -> None:
    """Generate every model of the zoo (or --only some) under MODELS_DIR."""
    unknown = sorted(set(only) - set(REGISTRY))
    if unknown:
        raise typer.BadParameter(f"unknown model(s) {unknown}; known: {sorted(REGISTRY)}", param_hint="--only")
    names = only or list(REGISTRY)
    table = Table("model", "path", "size MB", "seconds", "status")
    failures = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("generating", total=len(names))
        for name in names:
            entry = REGISTRY[name]
            progress.update(task, description=f"generating {name}")
            started = time.perf_counter()
            already = is_complete(model_dir(entry, models_dir)) and not force
            try:
                dest = write_generated(entry, models_dir, full_size=full_size, force=force)
                size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) / 2**20
                status = "present" if already else "written"
                table.add_row(name, str(dest), f"{size:.1f}", f"{time.perf_counter() - started:.1f}", status)
            except Exception as exc:  # report every model, then fail at the end
                failures += 1
                table.add_row(name, "-", "-", f"{time.perf_counter() - started:.1f}", f"[red]failed: {exc}[/red]")
            progress.advance(task)
    console.print(table)
    if failures:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
