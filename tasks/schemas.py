"""The pool's data as pydantic models: the detection event in, the routed event on the way, the result out.

The result's own contract (typed sections, schema version) is tasks.contract; it is re-exported here.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from tasks.contract import EnrichmentResult, FollowUp, ResultStatus
from workers.frame_quality import FrameQuality
from workers.records import Box
from workers.registry import detection_type_of

EVENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
CAMERA_ID_PATTERN = EVENT_ID_PATTERN
REJECTION_PREFIX = "rejected-"  # rejections are stored as enrichment:rejected-<task id>, never under an event's id
# A key the backend wrote: printable ASCII without spaces (admission also refuses the pool's own key spaces).
IMAGE_KEY_PATTERN = r"^[!-~]{1,256}$"

# Numbers must be JSON numbers: no "0.5" strings, no true/false, no NaN or infinity.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
StrictBox = tuple[Number, Number, Number, Number]

# What a rejection may echo back of the input: bounded, printable, one line.
MAX_ERRORS = 16
MAX_FIELD_CHARS = 80
MAX_REASON_CHARS = 300
MAX_ECHO_CHARS = 64
# The most frames the schema looks at (MAX_FRAMES, checked at admission, is lower): a longer list is refused
# before its entries are validated one by one.
FRAMES_CAP = 256

FRAME_FIELDS = ("image", "image_path", "image_key")

# Instants an event may carry (UTC; a timestamp without an offset is read as UTC): every one of them converts to
# UTC and formats without error (9999-12-31T23:59:59-01:00 is past the last representable UTC instant).
EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(9999, 1, 1, tzinfo=UTC)


class FrameSource(BaseModel):
    """Exactly one of: base64 bytes, a path under IMAGE_ROOT, or a key already in Redis."""

    model_config = ConfigDict(extra="forbid")

    image: StrictStr | None = Field(None, description="base64-encoded JPEG/PNG/WebP")
    image_path: StrictStr | None = Field(None, max_length=4096)
    image_key: StrictStr | None = Field(None, pattern=IMAGE_KEY_PATTERN)

    @model_validator(mode="after")
    def exactly_one(self) -> FrameSource:
        given = [name for name in FRAME_FIELDS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of image, image_path, image_key (got {given or 'none'})")
        return self

    @property
    def field(self) -> str:
        """The name of the field this frame came in (image, image_path or image_key)."""
        return next(name for name in FRAME_FIELDS if getattr(self, name) is not None)


def _check_box(value: Box | None) -> Box | None:
    if value is None:
        return None
    if not all(math.isfinite(v) for v in value):
        raise ValueError("coordinates must be finite numbers")
    x1, y1, x2, y2 = value
    if x2 <= x1 or y2 <= y1:
        raise ValueError("must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1")
    return value


class DetectionEvent(BaseModel):
    """One detection from the backend. Unknown fields are ignored (weights never come from an event)."""

    model_config = ConfigDict(extra="ignore", str_max_length=64 * 1024 * 1024)

    event_id: StrictStr = Field(pattern=EVENT_ID_PATTERN)
    camera_id: StrictStr = Field(pattern=CAMERA_ID_PATTERN)
    timestamp: datetime
    detection_type: StrictStr = Field(max_length=64)
    confidence: Number = Field(ge=0.0, le=1.0)
    bbox: StrictBox
    face_visible: StrictBool = False
    face_bbox: StrictBox | None = None
    suspicious_score: Number = Field(0.0, ge=0.0, le=100.0)
    image: StrictStr | None = None
    image_path: StrictStr | None = Field(None, max_length=4096)
    image_key: StrictStr | None = Field(None, pattern=IMAGE_KEY_PATTERN)
    frames: list[FrameSource] = Field(default_factory=list)

    @field_validator("detection_type")
    @classmethod
    def known_label(cls, value: str) -> str:
        label = detection_type_of(value)
        if label is None:
            raise ValueError(f"{echo(value)!r} is not a person, vehicle or animal label")
        return label

    @model_validator(mode="before")
    @classmethod
    def seed_frames_buffer(cls, data: Any) -> Any:
        """The seed's `frames_buffer` (base64 strings, or frames in our forms) is taken as `frames`."""
        if not isinstance(data, dict) or "frames_buffer" not in data:
            return data
        if data.get("frames"):
            raise ValueError("give frames or frames_buffer, not both")
        buffer = data["frames_buffer"]
        if buffer is not None and not isinstance(buffer, list):
            raise ValueError("frames_buffer must be a list of base64 images")
        frames = [{"image": item} if isinstance(item, str) else item for item in buffer or []]
        return {key: value for key, value in data.items() if key != "frames_buffer"} | {"frames": frames}

    @field_validator("timestamp")
    @classmethod
    def representable_instant(cls, value: datetime) -> datetime:
        try:
            instant = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
        except (OverflowError, ValueError):
            instant = None
        if instant is None or not EARLIEST_TIMESTAMP <= instant < LATEST_TIMESTAMP:
            raise ValueError(f"must be an instant from {EARLIEST_TIMESTAMP:%Y-%m-%d} to before "
                             f"{LATEST_TIMESTAMP:%Y-%m-%d} UTC")
        return value

    @field_validator("frames", mode="before")
    @classmethod
    def not_too_many_frames(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > FRAMES_CAP:
            raise ValueError(f"{len(value)} frames given, far above any MAX_FRAMES (at most {FRAMES_CAP})")
        return value

    @field_validator("event_id")
    @classmethod
    def not_a_rejection_id(cls, value: str) -> str:
        if value.startswith(REJECTION_PREFIX):
            raise ValueError(f"ids starting with {REJECTION_PREFIX!r} name rejected submissions; choose another")
        return value

    @field_validator("bbox", "face_bbox")
    @classmethod
    def valid_box(cls, value: Box | None) -> Box | None:
        return _check_box(value)

    @model_validator(mode="after")
    def one_frame_source(self) -> DetectionEvent:
        given = [name for name in FRAME_FIELDS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of image, image_path, image_key (got {given or 'none'})")
        return self

    @property
    def frame_source(self) -> FrameSource:
        return FrameSource(image=self.image, image_path=self.image_path, image_key=self.image_key)

    def summary(self, bbox: Box, face_bbox: Box | None, quality: FrameQuality | None = None) -> EventSummary:
        """The event without its pixels, with the boxes as the models saw them (clamped to the frame)."""
        return EventSummary(
            **self.model_dump(exclude={"image", "image_path", "image_key", "frames", "bbox", "face_bbox"}),
            bbox=bbox, face_bbox=face_bbox, frame_count=len(self.frames), quality=quality,
        )


class EventSummary(BaseModel):
    """What travels to assembly and into the prompt: the event's facts, its boxes clamped to the frame."""

    event_id: str
    camera_id: str
    timestamp: datetime
    detection_type: str
    confidence: float
    bbox: Box
    face_visible: bool = False
    face_bbox: Box | None = None
    suspicious_score: float = 0.0
    frame_count: int = 0
    quality: FrameQuality | None = None  # how the event's frame looks (measured at admission)


class RoutedEvent(BaseModel):
    """What the router decided for one event; rides the chord to assembly and waits in the ledger for the sweeper."""

    event: EventSummary
    planned: list[str]
    placement: dict[str, str]
    task_ids: dict[str, str]
    group_id: str = ""  # the chord header's group: its finished records wait in the result backend under it
    frame_key: str
    buffer_keys: list[str] = Field(default_factory=list)
    owned_keys: list[str] = Field(default_factory=list)  # what assembly deletes; a backend's own keys stay
    frame_size: tuple[int, int]
    received_at: float
    routed_at: float
    followups: list[str] = Field(default_factory=list)  # models the first round's evidence may still ask for
    stage: int = 1  # 2 once follow-up models were sent
    earlier_records: list[dict[str, Any]] = Field(default_factory=list)  # the first round's, kept for the second
    asked: dict[str, FollowUp] = Field(default_factory=dict)  # follow-ups the evidence asked for
    screening: dict[str, Any] | None = None  # below MIN_DETECTION_CONFIDENCE: no model planned, the result says so


def validation_errors(error: ValidationError) -> dict[str, str]:
    """pydantic's errors as {field: reason}, the field named the way the backend wrote it."""
    errors: dict[str, str] = {}
    for item in error.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in item["loc"]) or "event"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "finite_number":
            message = "must be a finite number"
        errors.setdefault(field, message)
    return bounded_errors(errors)


def echo(value: Any, limit: int = MAX_ECHO_CHARS) -> str:
    """A value from the input as a rejection may show it: printable ASCII on one line, at most `limit` characters."""
    text = value if isinstance(value, str) else repr(value)
    text = re.sub(r"[^ -~]", "?", text[: limit * 4])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bounded_errors(errors: dict[str, str]) -> dict[str, str]:
    """At most MAX_ERRORS entries, field names and reasons cut to size and made printable (they come from input)."""
    bounded: dict[str, str] = {}
    for field, reason in list(errors.items())[:MAX_ERRORS]:
        bounded.setdefault(echo(field, MAX_FIELD_CHARS), echo(reason, MAX_REASON_CHARS))
    if len(errors) > MAX_ERRORS:
        bounded["more_errors"] = f"{len(errors) - MAX_ERRORS} more errors not shown"
    return bounded


__all__ = ["EnrichmentResult", "FollowUp", "ResultStatus"]  # re-exported from tasks.contract
