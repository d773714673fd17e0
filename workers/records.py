"""What a model task is given and what it gives back: a ModelRequest in, a ModelRecord out (JSON on the wire)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Box = tuple[float, float, float, float]


class ModelRequest(BaseModel):
    """One model to run on one routed event: which model, where its frames are, and the (clamped) boxes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str
    model: str
    frame_key: str
    buffer_keys: list[str] = Field(default_factory=list)
    bbox: Box
    face_bbox: Box | None = None
    detection_type: str
    camera_id: str | None = None
    frame_id: str | None = None  # the frame's identity (its bytes' digest) for models whose answer is shared per frame


ModelStatus = Literal["ok", "error", "skipped", "timeout"]


class ModelRecord(BaseModel):
    """What one model task returns: never an exception, always a record with a reason."""

    model: str
    status: ModelStatus
    data: dict[str, Any] | None = None
    error: str | None = None
    device: str | None = None
    worker: str | None = None
    cache_hit: bool = False
    load_ms: float = 0.0
    infer_ms: float = 0.0
    shared_from: str | None = Field(
        None, description="the event whose run of this model on the same frame gave its frame outputs (run once per "
                          "frame); infer_ms is then this event's wait and its own part")

    def failed(self, status: ModelStatus, error: str) -> ModelRecord:
        """This record turned into a failure of the given kind, with its reason."""
        return self.model_copy(update={"status": status, "error": error})
