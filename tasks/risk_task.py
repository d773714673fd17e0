"""assess_event_risk: after assembly, ask the Nemotron server (when NEMOTRON_URL is set) and store its answer."""

from __future__ import annotations

import logging

from tasks.celery import app
from tasks.connection import result_store
from tasks.risk import RiskCallError, assess_risk
from tasks.schemas import EnrichmentResult
from workers.settings import get_settings

log = logging.getLogger(__name__)


@app.task(name="assess_event_risk")
def assess_event_risk(result: dict) -> dict:
    """Add risk_score, risk_level and summary to an assembled result; a bad or slow answer becomes an error."""
    nemotron = get_settings().nemotron
    enriched = EnrichmentResult.model_validate(result)
    if not nemotron.enabled or enriched.status == "rejected" or not enriched.prompt:
        return result
    try:
        answer = assess_risk(enriched.prompt, nemotron.url, model=nemotron.model, timeout=nemotron.timeout)
        enriched.risk = answer.model_dump()
    except RiskCallError as exc:
        log.warning("risk call for %s failed: %s", enriched.event_id, exc)
        enriched.errors["risk"] = str(exc)
    return result_store().add_to_own(enriched)
