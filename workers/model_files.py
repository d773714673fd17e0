"""Where each model's files live under MODELS_DIR (MODELS_DIR/<name>), and when a model directory counts as complete."""

from __future__ import annotations

from pathlib import Path

from workers.registry import ModelEntry

COMPLETE_MARKER = ".complete"


def model_dir(entry: ModelEntry, models_dir: Path) -> Path:
    return Path(models_dir) / entry.name


def is_complete(path: Path) -> bool:
    """A model directory counts only once its writer or downloader finished and verified it."""
    return (path / COMPLETE_MARKER).exists()
