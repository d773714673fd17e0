"""enrich_detection: validate the event, store its frame once, plan and place models, hand over to a chord."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from celery import chord
from kombu.utils.uuid import uuid
from pydantic import ValidationError

from tasks.app import app
from tasks.assemble import assemble, finish_event
from tasks.frame_store import FrameStore
from tasks.ledger import Ledger
from tasks.metrics import EVENTS
from tasks.model_task import run_model
from tasks.images import InputError, decode_base64, decode_image, read_confined
from tasks.placement import choose_queue, live_workers
from tasks.results import redis_client, result_store
from tasks.risk import NemotronSettings
from tasks.risk_task import assess_event_risk
from tasks.schemas import DetectionEvent, EnrichmentResult, FrameSource, validation_errors
from tasks.settings import Settings, get_settings
from workers.models.base import clamp_box
from workers.registry import REGISTRY, plan_models

log = logging.getLogger(__name__)


@dataclass
class CheckedFrames:
    """The event's frame (and buffer) as validated bytes, plus the clamped boxes."""

    frame: bytes | None
    frame_key: str | None  # set when the backend already put the frame in Redis
    size: tuple[int, int]
    bbox: tuple[int, int, int, int]
    face_bbox: tuple[int, int, int, int] | None
    buffer: list[bytes | str] = field(default_factory=list)  # bytes to store, or the backend's own image_key


def read_source(source: FrameSource, where: str, settings: Settings) -> bytes:
    if source.image is not None:
        return decode_base64(f"{where}image", source.image, settings.max_image_bytes)
    if source.image_path is not None:
        return read_confined(f"{where}image_path", source.image_path, settings.image_root, settings.max_image_bytes)
    data = redis_client().get(source.image_key)
    if data is None:
        raise InputError(f"{where}image_key", f"no such key {source.image_key!r} in Redis")
    if len(data) > settings.max_image_bytes:
        raise InputError(f"{where}image_key", f"larger than the {settings.max_image_bytes} byte limit")
    return data


def box_inside(field_name: str, box: tuple[float, ...], width: int, height: int) -> tuple[int, int, int, int]:
    """Clamp a box to the frame; a box that misses the frame entirely is an input error."""
    x1, y1, x2, y2 = box
    if x1 >= width or y1 >= height or x2 <= 0 or y2 <= 0:
        raise InputError(field_name, f"{list(box)} lies outside the {width}x{height} frame")
    return clamp_box(box, width, height)


def check_frames(event: DetectionEvent, settings: Settings) -> CheckedFrames:
    """Decode everything once here, so no model task ever meets a bad image."""
    if len(event.frames) > settings.max_frames:
        raise InputError("frames", f"{len(event.frames)} frames given, at most {settings.max_frames} allowed")
    source = event.frame_source
    data = read_source(source, "", settings)
    image = decode_image(next(n for n in ("image", "image_path", "image_key") if getattr(source, n)), data,
                         settings.max_image_pixels)
    width, height = image.size
    bbox = box_inside("bbox", event.bbox, width, height)
    face = box_inside("face_bbox", event.face_bbox, width, height) if event.face_bbox else None
    buffer: list[bytes | str] = []
    for index, frame_source in enumerate(event.frames):
        raw = read_source(frame_source, f"frames.{index}.", settings)
        decode_image(f"frames.{index}", raw, settings.max_image_pixels)
        buffer.append(frame_source.image_key or raw)  # a frame already in Redis is used where it is
    return CheckedFrames(
        frame=None if source.image_key else data, frame_key=source.image_key,
        size=(width, height), bbox=bbox, face_bbox=face, buffer=buffer,
    )


def reject(event: Any, errors: dict[str, str], task_id: str | None) -> dict:
    """Store and return a 'rejected' result naming the bad field(s)."""
    event_id = event.get("event_id") if isinstance(event, dict) else None
    if not isinstance(event_id, str) or not event_id or len(event_id) > 128:
        event_id = f"rejected-{task_id}"
    result = EnrichmentResult(
        event_id=event_id, status="rejected", errors=errors,
        camera_id=event.get("camera_id") if isinstance(event, dict) and isinstance(event.get("camera_id"), str) else None,
    )
    log.info("rejected event %s: %s", event_id, errors)
    EVENTS.labels("rejected").inc()
    return result_store().save(result)


def place_models(models: list[str], settings: Settings) -> dict[str, str]:
    """Queue per model for one event; models sent to one worker count against its free memory."""
    workers = live_workers(redis_client(), max_age_seconds=settings.heartbeat_seconds * 3)
    reserved: dict[str, int] = {}
    placement = {}
    for model in models:
        queue = choose_queue(model, workers, settings.device_queues, reserved, affinity=settings.affinity_routing)
        reserved[queue] = reserved.get(queue, 0) + REGISTRY[model].estimated_mb * 1024 * 1024
        placement[model] = queue
    return placement


class Rejected(Exception):
    """The event cannot be enriched; errors name the field(s) and why."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(errors)
        self.errors = errors


def parse_event(event: Any) -> DetectionEvent:
    """Schema validation only (cheap): raises Rejected naming the bad fields."""
    if not isinstance(event, dict):
        raise Rejected({"event": f"expected a JSON object, got {type(event).__name__}"})
    try:
        return DetectionEvent.model_validate(event)
    except ValidationError as exc:
        raise Rejected(validation_errors(exc)) from None


def admit_event(event: Any, settings: Settings) -> tuple[DetectionEvent, CheckedFrames]:
    """Everything the router checks before any model runs: the schema, then every frame decoded once."""
    detection = parse_event(event)
    try:
        return detection, check_frames(detection, settings)
    except InputError as exc:
        raise Rejected({exc.field: exc.reason}) from None


def route(detection: DetectionEvent, checked: CheckedFrames, settings: Settings, received_at: float):
    """Store the frames once, plan and place the models; returns (meta, chord signature or None)."""
    store = FrameStore(redis_client(), settings.frame_ttl_seconds)
    frame_key = checked.frame_key or store.put_frame(detection.event_id, checked.frame)
    buffer_keys, owned_buffer_keys = store.put_buffer(detection.event_id, checked.buffer)
    scene = settings.scene_models if detection.detection_type in settings.scene_detection_types else []
    models = plan_models(detection, scene_models=scene)
    placement = place_models(models, settings)
    meta = {
        "event": detection.summary(),
        "planned": models,
        "placement": placement,
        "frame_key": frame_key,
        "owns_frame": checked.frame is not None,
        "buffer_keys": buffer_keys,
        "owned_buffer_keys": owned_buffer_keys,  # what assembly deletes; the backend's own keys stay
        "frame_size": list(checked.size),
        "received_at": received_at,
        "routed_at": time.time(),
        "task_ids": {model: uuid() for model in models},
    }
    if not models:
        return meta, None
    context = {
        "frame_key": frame_key, "buffer_keys": buffer_keys, "bbox": list(checked.bbox),
        "face_bbox": list(checked.face_bbox) if checked.face_bbox else None,
        "detection_type": detection.detection_type,
    }
    header = [
        run_model.si(detection.event_id, model, context).set(queue=placement[model], task_id=meta["task_ids"][model])
        for model in models
    ]
    body = assemble.s(meta)
    if NemotronSettings.from_env().enabled:
        body = body | assess_event_risk.s()
    return meta, chord(header, body)


@app.task(name="enrich_detection", bind=True)
def enrich_detection(self, event: Any) -> dict:
    """Entry point for the backend: one detection event dict in, its EnrichmentResult out.

    One result per event_id: a stored result is returned as is, and a duplicate of an event still in
    flight waits for the original's result instead of computing it again.
    """
    received_at = time.time()
    settings = get_settings()
    try:
        detection = parse_event(event)
    except Rejected as exc:
        return reject(event, exc.errors, self.request.id)
    existing = result_store().get(detection.event_id)
    if existing is not None and existing.get("status") != "rejected":
        log.info("event %s already enriched; returning the stored result", detection.event_id)
        return existing
    ledger = Ledger(redis_client())
    if not ledger.claim(detection.event_id, settings.event_deadline_seconds * 2):
        log.info("event %s is already in flight; waiting for its result", detection.event_id)
        return self.replace(await_result.si(detection.event_id, time.time() + settings.event_deadline_seconds * 2))
    try:
        detection, checked = admit_event(event, settings)
    except Rejected as exc:
        ledger.release(detection.event_id)
        return reject(event, exc.errors, self.request.id)
    meta, work = route(detection, checked, settings, received_at)
    if work is None:
        ledger.release(detection.event_id)
        return finish_event([], meta)
    ledger.open(detection.event_id, meta, settings.event_deadline_seconds, settings.result_ttl_seconds)
    return self.replace(work)


@app.task(name="await_result", bind=True, max_retries=None)
def await_result(self, event_id: str, deadline: float) -> dict:
    """A duplicate submission's answer: the original's stored result, polled without blocking a worker."""
    stored = result_store().get(event_id)
    if stored is not None:
        return stored
    if time.time() > deadline:
        return EnrichmentResult(
            event_id=event_id, status="partial", errors={"event_id": "a duplicate of this event never finished"}
        ).model_dump(mode="json")
    raise self.retry(countdown=0.5)
