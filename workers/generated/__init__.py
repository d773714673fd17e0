"""Randomly initialised weights in the real on-disk formats: tiny for tests and the demo, full-size for GPU sizing.

Kept apart from the model families (workers.models never imports this package). `WRITERS` maps each model
name (and "noop") to its writer, `writer(dest, full_size=False)`; `write_generated` fills MODELS_DIR/<name>.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from workers.generated.action import write_action
from workers.generated.classifiers import write_age_gender, write_pet, write_vehicle
from workers.generated.clip import write_clip
from workers.generated.clothing import write_clothing
from workers.generated.depth import write_depth
from workers.generated.florence import write_florence
from workers.generated.noop import write_noop
from workers.generated.reid import write_reid
from workers.generated.yolo import write_pose, write_threat
from workers.model_files import COMPLETE_MARKER, is_complete, model_dir
from workers.registry import ModelEntry

Writer = Callable[..., None]  # writer(dest: Path, full_size: bool = False)

WRITERS: dict[str, Writer] = {
    "threat": write_threat,
    "pose": write_pose,
    "clothing": write_clothing,
    "age_gender": write_age_gender,
    "vehicle": write_vehicle,
    "pet": write_pet,
    "reid": write_reid,
    "depth": write_depth,
    "action": write_action,
    "florence": write_florence,
    "clip": write_clip,
    "noop": write_noop,
}


GENERATING_MARKER = ".generating"  # in a directory while a writer fills it: an interrupted write may be redone
GENERATED_KINDS = ("tiny random", "full-size random")  # what the complete marker says of generated weights


class NotGenerated(RuntimeError):
    """A model directory holds weights the generator did not write; random ones never replace them."""


def write_generated(entry: ModelEntry, models_dir: Path, full_size: bool = False, force: bool = False) -> Path:
    """Write random weights for `entry` into MODELS_DIR/<name> and mark it complete; skip one already complete.

    Only a directory this function wrote (complete, or left half-written by an interrupted run) is ever replaced;
    downloaded weights and files put there by hand raise NotGenerated instead, `force` or not.
    """
    dest = model_dir(entry, models_dir)
    if is_complete(dest) and not force:
        return dest
    refuse_unless_generated(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (dest / GENERATING_MARKER).write_text("being written by workers.generated\n")
    WRITERS[entry.name](dest, full_size=full_size)
    (dest / COMPLETE_MARKER).write_text(f"{GENERATED_KINDS[1] if full_size else GENERATED_KINDS[0]}\n")
    (dest / GENERATING_MARKER).unlink()
    return dest


def refuse_unless_generated(dest: Path) -> None:
    """Raise NotGenerated when `dest` holds anything but generated weights (absent or empty is fine)."""
    if not dest.exists():
        return
    if dest.is_dir():
        if (dest / GENERATING_MARKER).exists() or not any(dest.iterdir()):
            return
        if is_complete(dest):
            kind = (dest / COMPLETE_MARKER).read_text(errors="replace").strip()
            if kind in GENERATED_KINDS:
                return
            said = kind.splitlines()[0] if kind else "complete"
            raise NotGenerated(f"{dest} holds weights that were not generated ({said}); random weights never "
                               f"replace them: use another --models-dir")
    raise NotGenerated(f"{dest} holds files the generator did not write (no {COMPLETE_MARKER} marker); random "
                       f"weights never replace them: move them away, or use another --models-dir")
