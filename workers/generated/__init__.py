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


def write_generated(entry: ModelEntry, models_dir: Path, full_size: bool = False, force: bool = False) -> Path:
    """Write random weights for `entry` into MODELS_DIR/<name> and mark it complete; skip one already complete."""
    dest = model_dir(entry, models_dir)
    if is_complete(dest) and not force:
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    WRITERS[entry.name](dest, full_size=full_size)
    (dest / COMPLETE_MARKER).write_text("full-size random\n" if full_size else "tiny random\n")
    return dest
