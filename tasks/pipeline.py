"""The enrichment pipeline as plain functions: plan and route an admitted event, then assemble its model records.

The Celery tasks (router, run_model, assemble) are thin shells around these. `enrich_directly` runs the same
steps in one process over a local DeviceRuntime, without Celery or Redis: scripts/bench.py's direct path.
Assembly also finishes the stored result's shapes: the seed's top-level reid_match, approximate metres in the
depth section, the normalised vehicle/pet type, and CLIP's scene anomaly against the camera's baseline.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prompt_formatting import approximate_distance_m, build_risk_prompt, count_context_attributes
from prompt_formatting.vocabulary import (
    CLASSIFIER_CONFIDENCE_FLOOR,
    NOT_ANIMAL_LABELS,
    NOT_VEHICLE_LABELS,
    PLACEHOLDER_LABEL,
    normalise_label,
)
from tasks.admission import AdmittedEvent, admit, parse_event
from tasks.reid_gallery import ReidGallery
from tasks.scene_baseline import SceneBaseline
from tasks.schemas import EnrichmentResult, RoutedEvent
from workers.frames import buffer_key, frame_key
from workers.records import ModelRecord, ModelRequest
from workers.registry import REGISTRY, plan_models
from workers.runtime import DeviceRuntime
from workers.settings import DepthSettings, Settings

log = logging.getLogger(__name__)

DEFAULT_DEPTH = DepthSettings.model_construct()  # the documented defaults, without reading the environment


# -- routing ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameKeys:
    """Where an event's frames are: the full frame's key, the buffer's keys, and the bytes this event writes."""

    frame: str
    buffer: list[str]
    to_write: dict[str, bytes]  # key -> bytes; the backend's own image_key frames are not copied


def frame_keys(admitted: AdmittedEvent) -> FrameKeys:
    """Keys for the event's frames: the backend's own key where it gave one, else frame:<event_id>:*."""
    event_id = admitted.event.event_id
    frame = admitted.frame.key or frame_key(event_id)
    buffer = [f.key or buffer_key(event_id, i) for i, f in enumerate(admitted.buffer)]
    to_write = {frame: admitted.frame.data} if admitted.frame.data is not None else {}
    to_write |= {key: f.data for key, f in zip(buffer, admitted.buffer) if f.data is not None}
    return FrameKeys(frame, buffer, to_write)


def plan(admitted: AdmittedEvent, settings: Settings) -> list[str]:
    """The models for this event, most important first (scene models only for the configured types)."""
    event = admitted.event
    scene = settings.scene_models if event.detection_type in settings.scene_detection_types else []
    return plan_models(event, scene_models=scene)


def route(admitted: AdmittedEvent, keys: FrameKeys, models: list[str], placement: Mapping[str, str],
          task_ids: Mapping[str, str], received_at: float, group_id: str = "") -> tuple[RoutedEvent, list[ModelRequest]]:
    """The routed event (what assembly and the sweeper read) and one request per planned model."""
    event = admitted.event
    routed = RoutedEvent(
        event=event.summary(admitted.bbox, admitted.face_bbox), planned=models, placement=dict(placement),
        task_ids=dict(task_ids), group_id=group_id, frame_key=keys.frame, buffer_keys=keys.buffer, owned_keys=list(keys.to_write),
        frame_size=admitted.size, received_at=received_at, routed_at=time.time(),
    )
    requests = [
        ModelRequest(event_id=event.event_id, model=model, frame_key=keys.frame, buffer_keys=keys.buffer,
                     bbox=admitted.bbox, face_bbox=admitted.face_bbox, detection_type=event.detection_type,
                     camera_id=event.camera_id)
        for model in models
    ]
    return routed, requests


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


def seed_reid_match(match: Mapping[str, Any]) -> dict[str, Any] | None:
    """The seed's top-level reid_match for a gallery answer, or None for a first sighting (no known person).

    The seed prints its sighting_count as "Previous sightings", so here it excludes this sighting; the
    gallery's own answer (reid.reid_match: new, cameras, first/last seen) counts it.
    """
    if match.get("new") is not False:
        return None
    return {
        "identity": match["identity"],
        "similarity": match["similarity"],
        "sighting_count": max(int(match["sighting_count"]) - 1, 0),
        "name": match.get("name"),
    }


def match_identity(enrichment: dict[str, Any], camera_id: str, gallery: ReidGallery) -> str | None:
    """Attach the gallery's answer to the reid section, and the seed's reid_match to the enrichment when the
    person was seen before; returns the reason when the gallery failed."""
    reid = enrichment.get("reid")
    if not reid or not reid.get("embedding"):
        return None
    try:
        match = gallery.match_or_add(reid["embedding"], camera_id, time.time())
    except Exception as exc:
        log.warning("re-identification gallery unavailable: %s", exc)
        return f"error: {exc}"
    reid["reid_match"] = match
    seed_match = seed_reid_match(match)
    if seed_match is not None:
        enrichment["reid_match"] = seed_match
    return None


def score_scene(enrichment: dict[str, Any], camera_id: str, baseline: SceneBaseline) -> str | None:
    """CLIP's scene anomaly against the camera's baseline (the frame then joins it); the reason if it failed."""
    clip = enrichment.get("scene", {}).get("clip")
    if not isinstance(clip, dict) or not clip.get("frame_embedding"):
        return None
    try:
        clip["anomaly"] = baseline.score_and_learn(clip["frame_embedding"], camera_id)
    except Exception as exc:
        log.warning("scene baseline unavailable: %s", exc)
        return f"error: {exc}"
    return None


def add_distance(enrichment: dict[str, Any], camera_id: str, depth: DepthSettings) -> None:
    """Approximate metres (0.1 m) beside the depth section's relative depth, in the camera's calibrated range."""
    section = enrichment.get("depth")
    relative = section.get("relative_depth") if isinstance(section, dict) else None
    if isinstance(relative, bool) or not isinstance(relative, (int, float)) or not math.isfinite(relative):
        return
    near_m, far_m = depth.range_m(camera_id)
    section["distance_m"] = round(approximate_distance_m(relative, near_m, far_m), 1)


# Classifier sections that get a normalised type: section, the key it is stored under, classes never named.
CLASSIFIED_TYPES: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("vehicle", "vehicle_type", NOT_VEHICLE_LABELS),
    ("pet", "pet_type", NOT_ANIMAL_LABELS),
)


def classified_type(result: Mapping[str, Any], excluded: frozenset[str]) -> str | None:
    """The type a classifier names, as the prompt names it: the best label that is not an excluded class
    (background, pedestrian, person ...) nor a placeholder, normalised ("Pickup_Trucks" -> "pickup truck");
    None when there is none or its score is below CLASSIFIER_CONFIDENCE_FLOOR (too unsure to name)."""
    scores: dict[str, float | None] = {}
    top = normalise_label(result.get("label"))
    if top is not None:
        confidence = result.get("confidence")
        scores[top] = float(confidence) if isinstance(confidence, (int, float)) else None
    for entry in result.get("top_k") or []:
        name = normalise_label(entry.get("label")) if isinstance(entry, Mapping) else None
        if name is not None and name not in scores:
            score = entry.get("score")
            scores[name] = float(score) if isinstance(score, (int, float)) else None
    ranked = sorted(scores.items(), key=lambda item: -(item[1] if item[1] is not None else -1.0))
    for name, score in ranked:
        if name in excluded or PLACEHOLDER_LABEL.fullmatch(name):
            continue
        return name if score is None or score >= CLASSIFIER_CONFIDENCE_FLOOR else None
    return None


def name_types(enrichment: dict[str, Any]) -> None:
    """vehicle_type / pet_type beside the classifier's own label (null: not sure enough, or no such class)."""
    for section, key, excluded in CLASSIFIED_TYPES:
        result = enrichment.get(section)
        if isinstance(result, dict):
            result[key] = classified_type(result, excluded)


def assemble_result(records: Iterable[ModelRecord | Mapping[str, Any] | None], routed: RoutedEvent,
                    gallery: ReidGallery | None, baseline: SceneBaseline | None = None,
                    depth: DepthSettings = DEFAULT_DEPTH) -> EnrichmentResult:
    """Merge the records of one routed event, finish their shapes, and write the prompt.

    The person is matched against the re-ID gallery and the frame scored against the camera's scene
    baseline when they are given (either failing makes the event partial, named in errors).
    """
    event = routed.event
    enrichment, models = merge_records(records, routed.planned)
    unavailable = unavailable_models(models)
    if gallery is not None:
        gallery_error = match_identity(enrichment, event.camera_id, gallery)
        if gallery_error:
            unavailable["reid_gallery"] = gallery_error
    if baseline is not None:
        baseline_error = score_scene(enrichment, event.camera_id, baseline)
        if baseline_error:
            unavailable["scene_baseline"] = baseline_error
    add_distance(enrichment, event.camera_id, depth)
    name_types(enrichment)
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
        prompt=build_risk_prompt(summary, enrichment, unavailable),
        context_attributes=count_context_attributes(enrichment),
        timings={
            "route_ms": round((routed.routed_at - routed.received_at) * 1000, 2),
            "models_ms": round((now - routed.routed_at) * 1000, 2),
            "total_ms": round((now - routed.received_at) * 1000, 2),
            "load_ms": round(sum(r.load_ms for r in models.values()), 2),
            "infer_ms": round(sum(r.infer_ms for r in models.values()), 2),
        },
        errors=unavailable,
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
    routed, requests = route(admitted, keys, models, local, {model: "" for model in models}, received_at)
    return assemble_result([runtime.run(request) for request in requests], routed, gallery=None,
                           depth=settings.depth)
