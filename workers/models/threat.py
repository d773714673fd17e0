"""YOLOv8 weapon detector wrapper: threats held by or near the person, in frame pixels."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from workers.models.base import ModelInput
from workers.models.yolo_common import load_yolo, padded_crop, predict, release, write_checkpoint

CONFIDENCE_ENV = "THREAT_CONFIDENCE"
DEFAULT_CONFIDENCE = 0.5  # the seed's threshold
CHECKPOINT_NAME = "threat-detection-yolov8n.pt"
CONFIG = "yolov8n.yaml"  # Subh775/Threat-Detection-YOLOv8n is a fine-tuned YOLOv8n
# Class names for the generated weights only; a real checkpoint carries its own names.
TINY_NAMES = {0: "gun", 1: "knife", 2: "grenade", 3: "explosive"}


def threat_report(detections: Sequence[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """The contract from raw detections: those at or above threshold, most confident first."""
    kept = sorted(
        (
            {
                "type": str(d["type"]),
                "confidence": round(float(d["confidence"]), 4),
                "bbox": [round(float(v), 4) for v in d["bbox"]],
            }
            for d in detections
            if d["confidence"] >= threshold
        ),
        key=lambda d: -d["confidence"],
    )
    return {"threats_detected": bool(kept), "highest_threat": kept[0] if kept else None, "detections": kept}


def configured_confidence() -> float:
    """THREAT_CONFIDENCE from the environment, else the seed's 0.5."""
    return float(os.environ.get(CONFIDENCE_ENV, DEFAULT_CONFIDENCE))


class ThreatModel:
    """Weapons around a detected person (ultralytics YOLOv8, class names from the checkpoint).

    The model runs on the box plus a margin; boxes are mapped back to full-frame pixels.
    infer() after unload() raises RuntimeError: the model cache is expected to load() again.
    """

    def __init__(self, path: str, device: str) -> None:
        self.path = path
        self.device = device
        self.confidence = configured_confidence()
        self._model = None

    def load(self) -> None:
        model = load_yolo(self.path, self.device)
        if model.task != "detect":
            raise ValueError(f"{self.path} holds a {model.task!r} model, not a detector")
        self._model = model

    def unload(self) -> None:
        self._model = None
        release(self.device)

    def infer(self, inputs: ModelInput) -> dict:
        return self.infer_batch([inputs])[0]

    def infer_batch(self, batch: list[ModelInput]) -> list[dict]:
        """Weapons for each detection; the padded crops go through the detector in one call."""
        if self._model is None:
            raise RuntimeError("threat model is not loaded; call load() first")
        crops = [padded_crop(inputs) for inputs in batch]
        results = predict(self._model, [crop for crop, _ in crops], self.device, self.confidence)
        reports = []
        for (_, (dx, dy)), result in zip(crops, results):
            detections = [
                {"type": result.names[int(cls)], "confidence": conf, "bbox": [x1 + dx, y1 + dy, x2 + dx, y2 + dy]}
                for (x1, y1, x2, y2), conf, cls in zip(
                    result.boxes.xyxy.tolist(), result.boxes.conf.tolist(), result.boxes.cls.tolist()
                )
            ]
            reports.append(threat_report(detections, self.confidence))
        return reports


def write_tiny(dest: Path, full_size: bool = False) -> None:
    """Write a randomly initialised YOLOv8n detector with weapon classes (the real model is this size too)."""
    write_checkpoint(Path(dest) / CHECKPOINT_NAME, CONFIG, TINY_NAMES)
