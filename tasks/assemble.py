"""assemble: the chord callback that merges model records into the stored, prompt-ready result."""

from __future__ import annotations

import logging
import time
from typing import Any

from prompt_formatting import build_risk_prompt, count_context_attributes
from tasks.app import app
from tasks.frame_store import FrameStore
from tasks.ledger import Ledger
from tasks.metrics import ASSEMBLY_SECONDS, EVENTS
from tasks.reid_gallery import ReidGallery
from tasks.results import redis_client, result_store
from tasks.schemas import EnrichmentResult, ModelRecord
from tasks.settings import get_settings
from workers.registry import REGISTRY

log = logging.getLogger(__name__)


def merge_records(records: list[dict], planned: list[str]) -> tuple[dict[str, Any], dict[str, ModelRecord]]:
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


def unavailable_models(models: dict[str, ModelRecord]) -> dict[str, str]:
    """Models whose silence must not read as safety: name -> status and reason."""
    return {
        name: f"{record.status}: {record.error or 'no reason given'}"
        for name, record in models.items() if record.status != "ok"
    }


def match_identity(enrichment: dict[str, Any], event: dict[str, Any]) -> str | None:
    """Attach the gallery's reid_match to the reid section; returns the reason when the gallery failed."""
    reid = enrichment.get("reid")
    if not reid or not reid.get("embedding"):
        return None
    try:
        gallery = ReidGallery(redis_client())
        reid["reid_match"] = gallery.match_or_add(reid["embedding"], event.get("camera_id", "unknown"), time.time())
    except Exception as exc:
        log.warning("re-identification gallery unavailable: %s", exc)
        return f"error: {exc}"
    return None


def finish_event(records: list[dict], meta: dict[str, Any]) -> dict:
    """Build, store and announce the EnrichmentResult for one routed event; returns it as JSON."""
    event = meta["event"]
    enrichment, models = merge_records(records, meta["planned"])
    unavailable = unavailable_models(models)
    gallery_error = match_identity(enrichment, event)
    if gallery_error:
        unavailable["reid_gallery"] = gallery_error
    prompt = build_risk_prompt(event, enrichment, unavailable)
    now = time.time()
    result = EnrichmentResult(
        event_id=event["event_id"],
        status="partial" if unavailable else "complete",
        camera_id=event.get("camera_id"),
        detection_type=event.get("detection_type"),
        timestamp=event.get("timestamp"),
        enrichment=enrichment,
        models=models,
        prompt=prompt,
        context_attributes=count_context_attributes(enrichment),
        timings={
            "route_ms": round((meta["routed_at"] - meta["received_at"]) * 1000, 2),
            "models_ms": round((now - meta["routed_at"]) * 1000, 2),
            "total_ms": round((now - meta["received_at"]) * 1000, 2),
            "load_ms": round(sum(r.load_ms for r in models.values()), 2),
            "infer_ms": round(sum(r.infer_ms for r in models.values()), 2),
        },
        errors=unavailable,
    )
    payload = result_store().save(result)
    EVENTS.labels(result.status).inc()
    ASSEMBLY_SECONDS.observe(now - meta["routed_at"])
    settings = get_settings()
    frames = FrameStore(redis_client(), settings.frame_ttl_seconds)
    owned_buffer = meta.get("owned_buffer_keys", meta.get("buffer_keys", []))  # older metas own their buffer
    frames.delete(([meta["frame_key"]] if meta.get("owns_frame") else []) + owned_buffer)
    Ledger(redis_client()).close(result.event_id)
    return payload


@app.task(name="assemble")
def assemble(records: list[dict], meta: dict[str, Any]) -> dict:
    """Chord callback: records from every model task of one event, plus the router's meta."""
    return finish_event(records, meta)
