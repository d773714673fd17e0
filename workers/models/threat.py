"""YOLOv8 weapon detector: threats held by or near the person, in frame pixels, each rated by severity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prompt_formatting import SEVERITIES, threat_severity
from workers.models.base import ModelInput
from workers.models.yolo_family import UltralyticsFamily

SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}  # 0 = most severe


def threat_report(detections: Sequence[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """The seed's threat shape from raw detections: those at or above threshold, most severe first.

    Each threat carries its class's severity (prompt_formatting's THREAT_SEVERITY table: firearms critical,
    blades high, bats and tools medium, an unknown class high); `highest_threat` is the first of `threats`,
    the most severe, then the most confident.
    """
    kept = [
        {
            "type": str(d["type"]),
            "confidence": round(float(d["confidence"]), 4),
            "bbox": [round(float(v), 4) for v in d["bbox"]],
            "severity": threat_severity(d["type"]),
        }
        for d in detections
        if d["confidence"] >= threshold
    ]
    kept.sort(key=lambda d: (SEVERITY_RANK[d["severity"]], -d["confidence"]))
    return {"threats_detected": bool(kept), "threats": kept, "highest_threat": kept[0] if kept else None}


class ThreatModel(UltralyticsFamily):
    """Weapons around a detected person (ultralytics YOLOv8, class names from the checkpoint).

    Detections below the zoo's threat_confidence (THREAT_CONFIDENCE, the seed's 0.5) are dropped.
    """

    task = "detect"
    confidence_setting = "threat_confidence"

    def infer_batch(self, batch: list[ModelInput]) -> list[dict]:
        """Weapons for each detection; the padded crops go through the detector in one call."""
        return [
            threat_report(
                [
                    {"type": label, "confidence": confidence, "bbox": box}
                    for box, confidence, label in zip(found.boxes, found.confidences, found.labels)
                ],
                self.confidence,
            )
            for found in self.detect(batch)
        ]
