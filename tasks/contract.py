"""What a backend reads: the stored result's typed shape, its schema version, and where results are announced.

The enrichment's sections are declared beside their formatters (prompt_formatting, @result_section); this module
assembles them into `Enrichment` and `EnrichmentResult`, whose JSON Schema is published in this package
(enrichment_result.schema.json, written by `model-zoo schema`; a unit test fails when the two drift). Importing it
needs pydantic and this repository's pure modules only: no Celery, no Redis, no torch (tasks.client uses it).

Version policy (README, "For backend developers"): MAJOR.MINOR. A change that can break a reader (a field
removed, renamed, retyped, made required, or its meaning changed) bumps MAJOR; an addition a reader may ignore (a
new section, a new optional field) bumps MINOR. tests/unit/test_contract.py holds each version's schema digest, so
a schema change without a version bump fails.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_serializer

from prompt_formatting.sections import declared_results
from workers.records import ModelRecord

SCHEMA_VERSION = "1.1"
SCHEMA_FILE = Path(__file__).with_name("enrichment_result.schema.json")
SCHEMA_ID = "https://model-zoo-enrichment/schema/enrichment-result.schema.json"

# Where results are: enrichment:<event_id> (JSON), announced live on the channel and durably on the stream.
RESULT_KEY_PREFIX = "enrichment:"
COMPLETED_CHANNEL = "enrichment.completed"  # PUBLISH, for live listeners
COMPLETION_STREAM = "enrichment.completed"  # XADD, read with a consumer group (a key; channels are apart)


# A frame the backend's client put in Redis for the pool to take over (image_key "frame-upload:<uuid>"): read in
# place like any image_key, and deleted with the event's own frames when the event is done (TTL otherwise).
UPLOAD_KEY_PREFIX = "frame-upload:"

# A queue's doorbell: the pool's workers wait on it between takes (tasks/celery_internals/taking.py), and a sender
# that LPUSHes any token there after its message wakes an idle worker at once; a message sent without it is taken
# within Redis's blocking-timeout tick (1/hz s, 0.1 s with Redis's default hz 10).
WAKE_KEY_PREFIX = "_wake."


def wake_key(queue: str) -> str:
    return WAKE_KEY_PREFIX + queue


def result_key(event_id: str) -> str:
    return f"{RESULT_KEY_PREFIX}{event_id}"


class Sections(BaseModel):
    """Sections present in a stored enrichment; absent ones are left out when dumped (never written as null)."""

    model_config = ConfigDict(extra="allow")

    @model_serializer(mode="wrap")
    def _present_only(self, handler: Any) -> Any:
        data = handler(self)
        if not isinstance(self, Sections):  # an absent section of a group (None): its parent leaves it out
            return data
        present = self.model_fields_set | set(self.model_extra or {})
        return {key: value for key, value in data.items() if key in present}


def _optional(shape: type) -> Any:
    """A section field: not required, no null in the schema (absent sections are left out, not null)."""
    return (shape, Field(None, json_schema_extra=lambda schema: schema.pop("default", None)))


def _sections_model(name: str, doc: str, fields: dict[str, type]) -> type[Sections]:
    model = create_model(name, __base__=Sections, __doc__=doc,
                         **{key: _optional(shape) for key, shape in sorted(fields.items())})
    return model


@cache
def enrichment_model() -> type[Sections]:
    """`Enrichment`, built from every declared section: top-level ones, and those nested one level (scene.*)."""
    top: dict[str, type] = {}
    nested: dict[str, dict[str, type]] = {}
    for path, section in declared_results().items():
        if len(path) == 1:
            top[path[0]] = section.shape
        elif len(path) == 2:
            nested.setdefault(path[0], {})[path[1]] = section.shape
        else:
            raise ValueError(f"section {'.'.join(path)!r} nests deeper than one level")
    for group, members in nested.items():
        if group in top:
            raise ValueError(f"{group!r} is declared both as a section and as a group of sections")
        top[group] = _sections_model(group.title(), f"The {group} models' sections, by model.", members)
    return _sections_model("Enrichment", "The models' findings by section; a section is present when its model "
                                         "ran and succeeded (a failed model is named in errors instead).", top)


ResultStatus = Literal["complete", "partial", "rejected"]


class FollowUp(BaseModel):
    """A model the first models' evidence asked for: why, and whether it ran (else what it lacked)."""

    asked_by: str
    ran: bool
    missing: str | None = None


class EnrichmentResultBase(BaseModel):
    """The assembled enrichment, stored at enrichment:<event_id> and returned by enrich_detection."""

    schema_version: str = Field(SCHEMA_VERSION, description="MAJOR.MINOR of this contract (README's policy)")
    event_id: str
    status: ResultStatus
    submitted_event_id: str | None = Field(
        None, description="a rejection's event_id is rejected-<task id>; this echoes the id it was given")
    camera_id: str | None = None
    detection_type: str | None = None
    timestamp: str | None = None
    enrichment: Any = None  # typed in EnrichmentResult
    models: dict[str, ModelRecord] = Field(default_factory=dict)
    prompt: str | None = None
    context_attributes: int = 0
    risk: dict[str, Any] | None = Field(None, description="Nemotron's answer when NEMOTRON_URL is set")
    timings: dict[str, float] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)
    follow_ups: dict[str, FollowUp] = Field(default_factory=dict, description="models the evidence asked for, and why")


@cache
def result_model() -> type[EnrichmentResultBase]:
    enrichment = enrichment_model()
    return create_model(
        "EnrichmentResult", __base__=EnrichmentResultBase, __doc__=EnrichmentResultBase.__doc__,
        enrichment=(enrichment, Field(default_factory=enrichment)),
    )


def conforming_sections(enrichment: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The enrichment with every section that fails its declared shape taken out, and {model: reason} for those.

    A model whose output breaks the contract is reported like a failed model (its section absent, the event
    partial), never stored in a shape a backend was not promised. Undeclared keys are kept as they are (a unit
    test holds every registered model's section declared).
    """
    declared = declared_results()
    kept: dict[str, Any] = {}
    problems: dict[str, str] = {}

    def check(path: tuple[str, ...], value: Any) -> Any:
        section = declared[path]
        try:
            return section.shape.model_validate(value).model_dump(mode="json")
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(map(str, path + tuple(first["loc"])))
            problems[section.model or ".".join(path)] = (
                f"error: its result does not match schema {SCHEMA_VERSION} at {where}: {first['msg']}")
            return None

    groups = {path[0] for path in declared if len(path) == 2}
    for key, value in enrichment.items():
        if (key,) in declared:
            checked = check((key,), value)
            if checked is not None:
                kept[key] = checked
        elif key in groups and isinstance(value, dict):
            members = {sub: check((key, sub), item) if (key, sub) in declared else item for sub, item in value.items()}
            members = {sub: item for sub, item in members.items() if item is not None}
            if members:
                kept[key] = members
        elif key in groups:
            problems[key] = f"error: {key} must be an object of sections (schema {SCHEMA_VERSION})"
        else:
            kept[key] = value
    return kept, problems


def json_schema() -> dict[str, Any]:
    """The published JSON Schema (draft 2020-12) of a stored result."""
    schema = result_model().model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": f"EnrichmentResult {SCHEMA_VERSION}", **{k: v for k, v in schema.items() if k != "title"}}


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def published_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


EnrichmentResult = result_model()
Enrichment = enrichment_model()
