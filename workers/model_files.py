"""Where each model's files live under MODELS_DIR, and writing generated (tiny or full-size) ones there."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

from workers.registry import ModelEntry

COMPLETE_MARKER = ".complete"


def model_dir(entry: ModelEntry, models_dir: Path) -> Path:
    return models_dir / entry.local_dir


def is_complete(path: Path) -> bool:
    """A model directory counts only once its writer or downloader finished and verified it."""
    return (path / COMPLETE_MARKER).exists()


def write_generated(entry: ModelEntry, models_dir: Path, full_size: bool = False, force: bool = False) -> Path:
    """Write randomly initialised weights for `entry` through its family's write_tiny(); skip if complete."""
    dest = model_dir(entry, models_dir)
    if is_complete(dest) and not force:
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    module = importlib.import_module(f"workers.models.{entry.family.split(':')[0]}")
    dest.mkdir(parents=True)
    module.write_tiny(dest, full_size=full_size)
    (dest / COMPLETE_MARKER).write_text("full-size random\n" if full_size else "tiny random\n")
    return dest
