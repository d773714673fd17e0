"""Random-weight ultralytics checkpoints for the threat detector and the pose model (both YOLOv8n, tiny or not)."""

from __future__ import annotations

from pathlib import Path

from workers.models.yolo_family import offline_settings

THREAT_CHECKPOINT = "threat-detection-yolov8n.pt"
THREAT_CONFIG = "yolov8n.yaml"  # Subh775/Threat-Detection-YOLOv8n is a fine-tuned YOLOv8n
# Class names for the generated weights only; a real checkpoint carries its own names.
THREAT_NAMES = {0: "gun", 1: "knife", 2: "grenade", 3: "explosive"}

POSE_CHECKPOINT = "yolov8n-pose.pt"
POSE_CONFIG = "yolov8n-pose.yaml"  # shipped with ultralytics


def write_checkpoint(dest_file: Path, config: str, names: dict[int, str]) -> None:
    """Build a randomly initialised model from an ultralytics YAML config and save it as a loadable .pt."""
    offline_settings()
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load

    torch.manual_seed(0)
    yolo = YOLO(config)
    cfg = yaml_model_load(config)
    if cfg["nc"] != len(names):
        yolo.model = type(yolo.model)(cfg, nc=len(names), verbose=False)
    yolo.model.names = dict(names)
    dest_file.parent.mkdir(parents=True, exist_ok=True)
    yolo.save(str(dest_file))


def write_threat(dest: Path, full_size: bool = False) -> None:
    """A YOLOv8n detector with weapon classes (the real model is this size too)."""
    write_checkpoint(Path(dest) / THREAT_CHECKPOINT, THREAT_CONFIG, THREAT_NAMES)


def write_pose(dest: Path, full_size: bool = False) -> None:
    """A YOLOv8n-pose checkpoint (the real architecture is already small)."""
    write_checkpoint(Path(dest) / POSE_CHECKPOINT, POSE_CONFIG, {0: "person"})
