"""YOLOv8 weapon detector: threats held by or near the person, in frame pixels."""

from __future__ import annotations

from typing import Any, Sequence

from workers.models.base import ModelInput
from workers.models.yolo_family import UltralyticsFamily


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
