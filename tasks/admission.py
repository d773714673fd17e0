"""Admission: what the router checks before any model runs. The schema once, then every frame decoded once.

The router only checks the frames (workers/images.check_image: every byte decoded, a JPEG at an eighth of its
size) and keeps their sizes; the device workers decode the pixels they crop. The direct pipeline keeps the
pixels admission decoded (`pixels=True`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from PIL import Image
from pydantic import ValidationError

from tasks.contract import UPLOAD_KEY_PREFIX
from tasks.schemas import FRAMES_CAP, DetectionEvent, FrameSource, echo, validation_errors
from workers.frame_quality import FrameQuality, measure
from workers.images import InputError, check_image, decode_base64, decode_image, header_size, inspect_image, read_confined
from workers.models.base import clamp_box
from workers.records import Box
from workers.settings import Settings

# Reads a key the backend already put in Redis (None when there is no such key); raises InputError when the key
# cannot hold a frame (another type, too large).
KeyReader = Callable[[str], bytes | None]

# The smallest box the models can crop (each side, in pixels, after clamping to the frame), and the most
# elongated one (longer side / shorter side): a 1-pixel sliver or a 1:500 strip fails in the models' resizing.
MIN_BOX_SIDE = 2
MAX_BOX_ASPECT = 32

# Key spaces the pool writes itself: an image_key there would borrow another event's frame or read pool state.
RESERVED_KEY_PREFIXES = (
    "enrichment:", "frame:", "ledger:", "claim:", "deliveries:", "workers:", "reid:", "celery-task-meta-",
    "celery-taskset-meta-", "chord-unlock", "_kombu", "unacked", "waiters:", "crashes:",
)


class Rejected(Exception):
    """The event cannot be enriched; errors name the field(s) and why."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(errors)
        self.errors = errors


@dataclass
class CheckedFrame:
    """One frame as admitted: its bytes to store (None when it is already in Redis), its key there, its upright
    size, and its pixels when admission was asked to keep them."""

    data: bytes | None
    key: str | None
    size: tuple[int, int]
    image: Image.Image | None = None
    quality: FrameQuality | None = None  # the event's own frame only


@dataclass
class AdmittedEvent:
    """A valid event with its frames decoded and its boxes clamped to the frame."""

    event: DetectionEvent
    frame: CheckedFrame
    bbox: Box
    face_bbox: Box | None
    buffer: list[CheckedFrame] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return self.frame.size


def parse_event(raw: Any) -> DetectionEvent:
    """Schema validation only (cheap): raises Rejected naming the bad fields."""
    if not isinstance(raw, dict):
        raise Rejected({"event": f"expected a JSON object, got {type(raw).__name__}"})
    try:
        return DetectionEvent.model_validate(raw)
    except ValidationError as exc:
        raise Rejected(validation_errors(exc)) from None


def uploads_of(raw: Any) -> list[str]:
    """The frame-upload:* keys a submission names (its frame and its buffer's), whatever else is wrong with it."""
    sources = [raw] + (raw.get("frames") if isinstance(raw.get("frames"), list) else []) if isinstance(raw, dict) else []
    keys = [source.get("image_key") for source in sources[:FRAMES_CAP + 1] if isinstance(source, dict)]
    return [key for key in keys if isinstance(key, str) and key.startswith(UPLOAD_KEY_PREFIX)]


def redis_key_reader(client: redis.Redis, max_bytes: int) -> KeyReader:
    """Read a backend's image_key: a key of another type, or larger than max_bytes, is the event's input error."""

    def read(key: str) -> bytes | None:
        if key.startswith(RESERVED_KEY_PREFIXES):
            raise InputError("image_key", f"{echo(key)!r} is one of the pool's own keys, not a frame")
        try:
            kind = client.type(key).decode()
            if kind == "none":
                return None
            if kind != "string":
                raise InputError("image_key", f"{echo(key)!r} holds a Redis {kind}, not an image's bytes")
            if client.strlen(key) > max_bytes:
                raise InputError("image_key", f"larger than the {max_bytes} byte limit")
            return client.get(key)
        except redis.ResponseError as exc:  # WRONGTYPE and the like: the key changed under us, still its input
            raise InputError("image_key", f"{echo(key)!r} cannot be read as a frame ({echo(str(exc), 120)})") from None

    return read


def admit(event: DetectionEvent, settings: Settings, read_key: KeyReader, pixels: bool = False) -> AdmittedEvent:
    """Check every frame of a parsed event, so no model task ever meets a bad image; raises Rejected.

    `pixels`: decode the frames in full and keep them (the direct pipeline); otherwise only check them.
    """
    try:
        return _admit(event, settings, read_key, pixels)
    except InputError as exc:
        raise Rejected({exc.field: exc.reason}) from None


def _admit(event: DetectionEvent, settings: Settings, read_key: KeyReader, pixels: bool) -> AdmittedEvent:
    if len(event.frames) > settings.max_frames:
        raise InputError("frames", f"{len(event.frames)} frames given, at most {settings.max_frames} allowed")
    sources = [("", event.frame_source)] + [(f"frames.{i}.", source) for i, source in enumerate(event.frames)]
    read = [read_frame(source, where, settings, read_key) for where, source in sources]
    within_pixel_budget(read, settings.max_event_pixels)
    frame = check_frame(read[0], settings, pixels, looked_at=True)
    width, height = frame.size
    bbox = box_inside("bbox", event.bbox, width, height)
    face = box_inside("face_bbox", event.face_bbox, width, height) if event.face_bbox else None
    buffer = [check_frame(one, settings, pixels) for one in read[1:]]
    return AdmittedEvent(event=event, frame=frame, bbox=bbox, face_bbox=face, buffer=buffer)


@dataclass
class ReadFrame:
    """One frame source's encoded bytes, where it sits in the event, and its stored size from its header."""

    source: FrameSource
    field_name: str  # "image" / "image_key" for the frame, "frames.3" for a buffered one
    data: bytes
    header_size: tuple[int, int]


def read_frame(source: FrameSource, where: str, settings: Settings, read_key: KeyReader) -> ReadFrame:
    """Read one frame source within the byte limit and its size from the image header (nothing decoded yet).
    A frame the backend's client uploaded for it (frame-upload:*) is named `image` in errors, as it was sent."""
    uploaded = source.image_key is not None and source.image_key.startswith(UPLOAD_KEY_PREFIX)
    name = f"{where}{'image' if uploaded else source.field}"
    try:
        data = read_source(source, name, settings, read_key)
    except InputError as exc:
        raise InputError(name, exc.reason) from None  # named where it sits: image_key or frames.3.image_key
    field_name = where.rstrip(".") or name
    return ReadFrame(source, field_name, data, header_size(field_name, data, settings.max_image_pixels))


def within_pixel_budget(frames: list[ReadFrame], budget: int) -> None:
    """The event's frames together hold at most `budget` pixels (MAX_EVENT_PIXELS), from their headers."""
    total = sum(width * height for width, height in (frame.header_size for frame in frames))
    if total > budget:
        where = "frames" if len(frames) > 1 else frames[0].field_name
        raise InputError(where, f"the event's {len(frames)} frame(s) hold {total:,} pixels in all, above the "
                                f"{budget:,} pixel budget per event (MAX_EVENT_PIXELS)")


def check_frame(read: ReadFrame, settings: Settings, pixels: bool = False, looked_at: bool = False) -> CheckedFrame:
    """Check (or decode, with `pixels`) one read frame; a frame already in Redis stays where it is.
    `looked_at`: also measure how the picture looks (brightness, sharpness ...) from what the check decoded."""
    field_name, data = read.field_name, read.data
    image = decode_image(field_name, data, settings.max_image_pixels) if pixels else None
    quality = None
    if image is not None:
        size = image.size
        quality = measure(image, data) if looked_at else None
    elif looked_at:
        size, reduced = inspect_image(field_name, data, settings.max_image_pixels)
        quality = measure(reduced, data)
    else:
        size = check_image(field_name, data, settings.max_image_pixels)
    source = read.source
    key, kept = (source.image_key, None) if source.image_key is not None else (None, data)
    return CheckedFrame(data=kept, key=key, size=size, image=image, quality=quality)


def read_source(source: FrameSource, name: str, settings: Settings, read_key: KeyReader) -> bytes:
    """The encoded bytes of one frame source, within the byte limit."""
    if source.image is not None:
        return decode_base64(name, source.image, settings.max_image_bytes)
    if source.image_path is not None:
        return read_confined(name, source.image_path, settings.image_root, settings.max_image_bytes)
    data = read_key(source.image_key)
    if data is None:
        raise InputError(name, f"no such key {source.image_key!r} in Redis")
    if len(data) > settings.max_image_bytes:
        raise InputError(name, f"larger than the {settings.max_image_bytes} byte limit")
    return data


def box_inside(field_name: str, box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """Clamp a box to the frame; a box that misses the frame, or leaves less than the models can crop, is an error."""
    x1, y1, x2, y2 = box
    if x1 >= width or y1 >= height or x2 <= 0 or y2 <= 0:
        raise InputError(field_name, f"{list(box)} lies outside the {width}x{height} frame")
    clamped = clamp_box(box, width, height)
    left, top, right, bottom = clamped
    sides = (right - left, bottom - top)
    if min(sides) < MIN_BOX_SIDE:
        raise InputError(field_name, f"{list(box)} leaves {sides[0]}x{sides[1]} px inside the {width}x{height} frame; "
                                     f"at least {MIN_BOX_SIDE}x{MIN_BOX_SIDE} px are needed")
    if max(sides) > MAX_BOX_ASPECT * min(sides):
        raise InputError(field_name, f"{list(box)} leaves a {sides[0]}x{sides[1]} px strip inside the frame; "
                                     f"at most {MAX_BOX_ASPECT}:1 is accepted")
    return clamped
