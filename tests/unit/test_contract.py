"""The result contract: the published JSON Schema is the code's, each version's schema is frozen, stored results
and README's examples validate against it, and the backend's client imports without torch or model code."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from tasks.contract import SCHEMA_FILE, SCHEMA_VERSION, EnrichmentResult, conforming_sections, published_schema, schema_text
from tasks.pipeline import assemble_result
from tasks.router import rejection
from tests.unit.test_assembly import person_records, routed
from workers.models.clothing import category_result

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()

# Each released version's schema, by digest: a schema change without a version bump fails here. Add a line when
# SCHEMA_VERSION changes (README, "For backend developers", says which changes bump what); never edit one.
SCHEMA_DIGESTS = {
    "1.0": "1e58768f736ae78087152682b3c68c943e4bf89b278dcae1b78980c76e547ddd",
    "1.1": "e95538811ab50c3a6dfc4be0c95f6315e333fb5fc047e2e3e85697b502efbbe0",  # face, household, screening; shared_from
}


def validator() -> jsonschema.protocols.Validator:
    schema = published_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_published_schema_is_the_codes():
    assert SCHEMA_FILE.read_text() == schema_text(), "run `model-zoo schema` (and bump SCHEMA_VERSION: README's policy)"


def test_a_schema_change_bumps_the_version():
    digest = hashlib.sha256(schema_text().encode()).hexdigest()
    assert SCHEMA_VERSION in SCHEMA_DIGESTS, f"add {SCHEMA_VERSION!r}: {digest!r} to SCHEMA_DIGESTS"
    assert SCHEMA_DIGESTS[SCHEMA_VERSION] == digest, (
        f"the schema changed but SCHEMA_VERSION is still {SCHEMA_VERSION}: bump it as README's policy says")


def test_an_assembled_result_and_a_rejection_validate_against_the_published_schema():
    records = person_records() | {"clothing": {"model": "clothing", "status": "ok", "data": {
        "carrying": category_result(("person carrying a box", "person empty-handed"), [0.8, 0.2])}}}
    result = assemble_result(records.values(), routed("evt-1", planned=list(records)), None).model_dump(mode="json")
    refused = rejection({"event_id": "e"}, {"bbox": "must be [x1, y1, x2, y2]"}, "task-1").model_dump(mode="json")
    for stored in (result, refused):
        validator().validate(stored)
        assert stored["schema_version"] == SCHEMA_VERSION
    assert set(result["enrichment"]) == {"clothing", "pose", "threat", "demographics", "action", "reid", "depth",
                                         "scene", "scene_context", "household"}
    assert result["status"] == "complete", result["errors"]


def test_a_section_off_its_shape_fails_the_schema_and_assembly_leaves_it_out():
    result = assemble_result(person_records().values(), routed("evt-1"), None).model_dump(mode="json")
    result["enrichment"]["threat"] = {"threats": "none"}  # no threats_detected, threats not a list
    with pytest.raises(jsonschema.ValidationError):
        validator().validate(result)
    kept, problems = conforming_sections({"threat": {"threats": "none"}, "depth": {"relative_depth": 0.4,
                                                                                    "proximity": "close"}})
    assert kept == {"depth": {"relative_depth": 0.4, "proximity": "close"}}
    assert problems["threat"].startswith(f"error: its result does not match schema {SCHEMA_VERSION} at threat.")


def test_a_group_of_sections_that_is_not_an_object_is_left_out():
    kept, problems = conforming_sections({"scene": ["not", "sections"]})
    assert kept == {} and set(problems) == {"scene"}
    EnrichmentResult(event_id="e", status="partial", enrichment=kept)


def test_absent_sections_and_fields_are_left_out_not_null():
    dumped = EnrichmentResult(event_id="e", status="complete",
                              enrichment={"depth": {"relative_depth": 0.4, "proximity": "close"}}).model_dump(mode="json")
    assert dumped["enrichment"] == {"depth": {"relative_depth": 0.4, "proximity": "close"}}


def readme_examples() -> list[tuple[str, dict]]:
    """README's JSON blocks marked <!-- schema: enrichment-result --> on the line before."""
    found = re.findall(r"<!-- schema: enrichment-result -->\n```json\n(.*?)\n```", README, flags=re.DOTALL)
    return [(block[:60], json.loads(block)) for block in found]


def test_readme_result_examples_validate_against_the_published_schema():
    examples = readme_examples()
    assert len(examples) >= 2, "README shows a stored result and a rejection"
    for start, example in examples:
        validator().validate(example)
        EnrichmentResult.model_validate(example)
        assert example["schema_version"] == SCHEMA_VERSION, start


def test_the_client_imports_without_torch_or_model_or_task_code():
    probe = ("import sys, tasks.client; heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
             "{'torch', 'transformers', 'ultralytics', 'open_clip', 'PIL', 'numpy', 'pydantic_settings'} or "
             "m.startswith(('workers.models', 'workers.settings', 'tasks.router', 'tasks.celery', 'tasks.model_task',"
             " 'celeryconfig'))); print(heavy)")
    run = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]", run.stdout
