"""The enrichment pipeline as plain functions: plan and route an admitted event, then assemble its model records.

The Celery tasks (router, run_model, assemble) are thin shells around these. `enrich_directly` runs the same
steps in one process over a local DeviceRuntime, without Celery or Redis: scripts/bench.py's direct path.
Assembly also finishes the stored result's shapes through each model's finisher (named in the registry): the
seed's top-level reid_match, approximate metres in the depth section, the readable vehicle/pet type, and CLIP's
scene anomaly against the camera's baseline; then holds every section to its declared shape (tasks.contract): one
that breaks it is left out and its model named in errors, never stored in a shape a backend was not promised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prompt_formatting import build_risk_prompt, count_context_attributes
from tasks.admission import AdmittedEvent, admit, parse_event
from tasks.contract import UPLOAD_KEY_PREFIX, conforming_sections
from tasks.reid_gallery import ReidGallery
from tasks.scene_baseline import SceneBaseline
from tasks.scene_context import PictureBaseline, describe_scene, local_moment
from tasks.schemas import EnrichmentResult, FollowUp, RoutedEvent
from workers.finishing import Finishing, HouseholdStore
from workers.frames import buffer_key, frame_key
from workers.records import ModelRecord, ModelRequest
from workers.registry import MODELS, REGISTRY, followup_candidates, plan_models
from workers.runtime import DeviceRuntime
from workers.settings import CameraSettings, DepthSettings, Settings

log = logging.getLogger(__name__)

DEFAULT_DEPTH = DepthSettings.model_construct()  # the documented defaults, without reading the environment
DEFAULT_CAMERAS = CameraSettings.model_construct()


# -- routing ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameKeys:
    """Where an event's frames are: the full frame's key, the buffer's keys, and the bytes this event writes."""

    frame: str
    buffer: list[str]
    to_write: dict[str, bytes]  # key -> bytes; the backend's own image_key frames are not copied
    handed_over: list[str] = field(default_factory=list)  # the client's uploads (frame-upload:*): deleted with ours

    @property
    def owned(self) -> list[str]:
        """What the pool deletes when the event is done: the frames it wrote and the uploads handed to it."""
        return list(self.to_write) + [key for key in self.handed_over if key not in self.to_write]


def frame_keys(admitted: AdmittedEvent) -> FrameKeys:
    """Keys for the event's frames: the backend's own key where it gave one, else frame:<event_id>:*."""
    event_id = admitted.event.event_id
    frame = admitted.frame.key or frame_key(event_id)
    buffer = [f.key or buffer_key(event_id, i) for i, f in enumerate(admitted.buffer)]
    to_write = {frame: admitted.frame.data} if admitted.frame.data is not None else {}
    to_write |= {key: f.data for key, f in zip(buffer, admitted.buffer) if f.data is not None}
    given = [f.key for f in (admitted.frame, *admitted.buffer) if f.key]
    return FrameKeys(frame, buffer, to_write, [key for key in given if key.startswith(UPLOAD_KEY_PREFIX)])


def screen(admitted: AdmittedEvent, settings: Settings) -> dict[str, Any] | None:
    """The 'below threshold' note of a detection less confident than MIN_DETECTION_CONFIDENCE, else None."""
    floor = settings.min_detection_confidence
    confidence = admitted.event.confidence
    if floor is None or confidence >= floor:
        return None
    return {"below_threshold": True, "confidence": confidence, "min_confidence": floor}


def plan(admitted: AdmittedEvent, settings: Settings) -> list[str]:
    """The models for this event, most important first (scene models only for the configured types); none for a
    detection below MIN_DETECTION_CONFIDENCE."""
    event = admitted.event
    if screen(admitted, settings) is not None:
        return []
    scene = settings.scene_models if event.detection_type in settings.scene_detection_types else []
    return plan_models(event, scene_models=scene)


def route(admitted: AdmittedEvent, keys: FrameKeys, models: list[str], placement: Mapping[str, str],
          task_ids: Mapping[str, str], received_at: float, group_id: str = "",
          screening: dict[str, Any] | None = None) -> tuple[RoutedEvent, list[ModelRequest]]:
    """The routed event (what assembly and the sweeper read) and one request per planned model."""
    event = admitted.event
    routed = RoutedEvent(
        event=event.summary(admitted.bbox, admitted.face_bbox, admitted.frame.quality), planned=models, placement=dict(placement),
        task_ids=dict(task_ids), group_id=group_id, frame_key=keys.frame, buffer_keys=keys.buffer,
        owned_keys=keys.owned, frame_size=admitted.size, received_at=received_at, routed_at=time.time(),
        followups=followup_candidates(event, models), screening=screening,
    )
    return routed, [model_request(routed, model) for model in models]


def frame_identity(routed: RoutedEvent) -> str | None:
    """What makes two events' frames the same frame: the digest of its bytes (measured at admission, so the same
    image_key, or the same bytes sent inline twice, match), else the backend's own image_key."""
    quality = routed.event.quality
    if quality is not None and quality.fingerprint:
        return f"bytes:{quality.fingerprint}"
    if routed.frame_key != frame_key(routed.event.event_id):  # the backend's key, not one the router wrote per event
        return f"key:{routed.frame_key}"
    return None


def model_request(routed: RoutedEvent, model: str, changes: Mapping[str, Any] | None = None) -> ModelRequest:
    """One model's request on a routed event (with a follow-up's changes, such as the face box it found); models
    whose answer is shared per frame carry the frame's identity."""
    event = routed.event
    entry = REGISTRY.get(model)
    fields = {"event_id": event.event_id, "model": model, "frame_key": routed.frame_key,
              "buffer_keys": routed.buffer_keys, "bbox": event.bbox, "face_bbox": event.face_bbox,
              "detection_type": event.detection_type, "camera_id": event.camera_id,
              "frame_id": frame_identity(routed) if entry is not None and entry.shared_per_frame else None}
    return ModelRequest(**(fields | dict(changes or {})))


# -- the second round ---------------------------------------------------------------------------------------
def ask_followups(routed: RoutedEvent, records: Iterable[ModelRecord | Mapping[str, Any] | None]
                  ) -> tuple[list[ModelRequest], dict[str, FollowUp]]:
    """What the first round's evidence asks for: the follow-up requests to run, and every ask with its reason
    (one that lacks what it needs is noted and not run)."""
    enrichment, _ = merge_records(records, routed.planned)
    requests, asked = [], {}
    for name in routed.followups:
        rule = REGISTRY[name].follow_rule()
        ask = rule(enrichment, routed.event) if rule is not None else None
        if ask is None:
            continue
        asked[name] = FollowUp(asked_by=ask.reason, ran=ask.missing is None, missing=ask.missing)
        if ask.missing is None:
            requests.append(model_request(routed, name, ask.request))
    return requests, asked


def second_round(routed: RoutedEvent, records: Iterable[ModelRecord | Mapping[str, Any] | None],
                 requests: list[ModelRequest], placement: Mapping[str, str], task_ids: Mapping[str, str],
                 asked: Mapping[str, FollowUp], group_id: str = "") -> RoutedEvent:
    """The routed event once its follow-ups are sent: the first round's records kept, the new models planned."""
    models = [request.model for request in requests]
    return routed.model_copy(update={
        "planned": routed.planned + models, "placement": routed.placement | dict(placement),
        "task_ids": routed.task_ids | dict(task_ids), "group_id": group_id, "stage": 2, "followups": [],
        "earlier_records": [ModelRecord.model_validate(r).model_dump(mode="json") for r in records if r],
        "asked": dict(asked),
    })


# -- assembly ---------------------------------------------------------------------------------------------
def merge_records(records: Iterable[ModelRecord | Mapping[str, Any] | None],
                  planned: list[str]) -> tuple[dict[str, Any], dict[str, ModelRecord]]:
    """Records by model, and the enrichment sections filled by the models that succeeded.

    A planned model with no record (lost on the way) gets an error record, so silence never passes for success.
    """
    by_model = {r.model: r for r in (ModelRecord.model_validate(raw) for raw in records if raw)}
    for name in planned:
        by_model.setdefault(name, ModelRecord(model=name, status="error", error="no record came back"))
    enrichment: dict[str, Any] = {}
    for name, record in by_model.items():
        if record.status != "ok" or record.data is None:
            continue
        section = REGISTRY[name].section if name in REGISTRY else name
        if section == "scene":
            enrichment.setdefault("scene", {})[name] = record.data
        else:
            enrichment[section] = dict(record.data)
    return enrichment, by_model


def unavailable_models(models: Mapping[str, ModelRecord]) -> dict[str, str]:
    """Models whose silence must not read as safety: name -> status and reason."""
    return {
        name: f"{record.status}: {record.error or 'no reason given'}"
        for name, record in models.items() if record.status != "ok"
    }


def camera_time(event: Any, cameras: CameraSettings) -> datetime | None:
    """The event's instant in its camera's time zone (UTC when none is set); None at the calendar's edge."""
    try:
        return local_moment(event.timestamp, cameras.place(event.camera_id).timezone or "UTC")
    except (OverflowError, ValueError):
        return None


def assemble_result(records: Iterable[ModelRecord | Mapping[str, Any] | None], routed: RoutedEvent,
                    gallery: ReidGallery | None, baseline: SceneBaseline | None = None,
                    depth: DepthSettings = DEFAULT_DEPTH, cameras: CameraSettings = DEFAULT_CAMERAS,
                    pictures: PictureBaseline | None = None, household: HouseholdStore | None = None,
                    face_retention_seconds: int = 0) -> EnrichmentResult:
    """Merge the records of one routed event, finish their shapes, and write the prompt.

    Each model's finisher (the registry's) completes its section: the person is matched against the re-ID
    gallery and the frame scored against the camera's scene baseline when they are given (either failing
    makes the event partial, named in errors), metres and readable types are added.
    """
    event = routed.event
    enrichment, models = merge_records([*routed.earlier_records, *records], routed.planned)
    if routed.screening is not None:
        enrichment["screening"] = dict(routed.screening)
    finishing = Finishing(camera_id=event.camera_id, depth=depth, gallery=gallery, baseline=baseline,
                          household=household, event=event, local_time=camera_time(event, cameras),
                          face_retention_seconds=face_retention_seconds)
    for entry in MODELS:
        finish = entry.finisher()
        if finish is not None:
            finish(enrichment, finishing)
    enrichment["scene_context"] = describe_scene(event, enrichment.get("scene", {}).get("clip"), cameras, pictures,
                                                 finishing.unavailable)
    enrichment, off_contract = conforming_sections(enrichment)
    unavailable = unavailable_models(models) | finishing.unavailable | off_contract
    not_run = {name: f"not run: asked for by {ask.asked_by}, but {ask.missing}"
               for name, ask in routed.asked.items() if not ask.ran}
    summary = event.model_dump(mode="json")
    now = time.time()
    return EnrichmentResult(
        event_id=event.event_id,
        status="partial" if unavailable else "complete",
        camera_id=event.camera_id,
        detection_type=event.detection_type,
        timestamp=summary["timestamp"],
        enrichment=enrichment,
        models=models,
        prompt=build_risk_prompt(summary, enrichment, unavailable | not_run),
        context_attributes=count_context_attributes(enrichment),
        timings={
            "route_ms": round((routed.routed_at - routed.received_at) * 1000, 2),
            "models_ms": round((now - routed.routed_at) * 1000, 2),
            "total_ms": round((now - routed.received_at) * 1000, 2),
            "load_ms": round(sum(r.load_ms for r in models.values()), 2),
            "infer_ms": round(sum(r.infer_ms for r in models.values()), 2),
        },
        errors=unavailable,
        follow_ups=routed.asked,
    )


# -- all of it in one process -----------------------------------------------------------------------------
def enrich_directly(raw: Any, runtime: DeviceRuntime, settings: Settings) -> EnrichmentResult:
    """One event through admission, planning, every model on `runtime`, and assembly, in this process.

    Frames are handed to the runtime decoded (no Redis); neither the re-ID gallery nor the scene baseline is
    consulted. Raises Rejected.
    """
    received_at = time.time()
    admitted = admit(parse_event(raw), settings, read_key=lambda key: None, pixels=True)
    keys = frame_keys(admitted)
    runtime.frames.remember(keys.frame, admitted.frame.image)
    for key, frame in zip(keys.buffer, admitted.buffer):
        runtime.frames.remember(key, frame.image)
    models = plan(admitted, settings)
    local = {model: runtime.queue for model in models}
    routed, requests = route(admitted, keys, models, local, {model: "" for model in models}, received_at,
                             screening=screen(admitted, settings))
    records = [runtime.run(request) for request in requests]
    followups, asked = ask_followups(routed, records)
    if asked:
        routed = second_round(routed, records, followups, {r.model: runtime.queue for r in followups},
                              {r.model: "" for r in followups}, asked)
        records = [runtime.run(request) for request in followups]
    return assemble_result(records, routed, gallery=None, depth=settings.depth, cameras=settings.cameras)
