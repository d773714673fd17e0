"""The face family's test weights, written once into the tiny-models folder: real MTCNN, a random embedder."""

from __future__ import annotations

from pathlib import Path

from scripts.fixtures.weights.face import write_face

COMPLETE = ".complete"


def tiny_face_dir(models_dir: Path, name: str = "face", seed: int = 0) -> Path:
    """models_dir/name holding the face family's weights (written on first use, then reused)."""
    dest = Path(models_dir) / name
    if not (dest / COMPLETE).exists():
        write_face(dest, full_size=False, seed=seed)
        (dest / COMPLETE).write_text("tiny random\n")
    return dest
