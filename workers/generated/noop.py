"""The no-op family's "weights": a marker file its load() looks for."""

from __future__ import annotations

from pathlib import Path

from workers.models.noop import MARKER


def write_noop(dest: Path, full_size: bool = False) -> None:
    """A marker file: the weights of a model that has none."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MARKER).write_text("no-op model for orchestration benchmarks\n")
