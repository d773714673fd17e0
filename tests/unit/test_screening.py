"""A detection below MIN_DETECTION_CONFIDENCE gets a short 'below threshold' result instead of the zoo."""

from __future__ import annotations

import pytest

from prompt_formatting import build_risk_prompt, count_context_attributes
from scripts.fixtures.sample_events import person_event
from tasks.contract import EnrichmentResult
from tasks.pipeline import enrich_directly
from workers.frames import DecodedFrames
from workers.runtime import DeviceRuntime
from workers.settings import Settings


@pytest.fixture
def runtime(tmp_path):
    settings = Settings(models_dir=tmp_path, device="cpu", memory_share_mb=64)
    created = DeviceRuntime(settings, DecodedFrames(None, settings.max_image_pixels), "cpu0@screening")
    yield created
    created.stop()


def test_the_seeds_minimum_is_the_default_and_off_turns_it_off(monkeypatch):
    assert Settings().min_detection_confidence == 0.5
    for off in ("off", "", "none"):
        monkeypatch.setenv("MIN_DETECTION_CONFIDENCE", off)
        assert Settings().min_detection_confidence is None
    monkeypatch.setenv("MIN_DETECTION_CONFIDENCE", "0.3")
    assert Settings().min_detection_confidence == 0.3


def test_a_detection_below_the_minimum_runs_no_model_and_says_so(runtime, tmp_path):
    settings = Settings(models_dir=tmp_path, device="cpu")
    result = enrich_directly(person_event("weak") | {"confidence": 0.31}, runtime, settings)
    assert result.status == "complete" and result.models == {} and result.errors == {}
    assert result.enrichment.model_dump(mode="json")["screening"] == {
        "below_threshold": True, "confidence": 0.31, "min_confidence": 0.5}
    assert ("- **Below threshold**: detector confidence 31% is under the minimum of 50%; no vision model analysed "
            "this detection. Weigh it as weak evidence.") in result.prompt
    assert "Unavailable Analyses" not in result.prompt  # nothing failed: nothing was asked
    EnrichmentResult.model_validate(result.model_dump(mode="json"))


def test_at_the_minimum_or_with_the_screen_off_the_zoo_is_planned(runtime, tmp_path):
    from tasks.admission import admit, parse_event
    from tasks.pipeline import plan, screen

    on = Settings(models_dir=tmp_path, device="cpu")
    off = Settings(models_dir=tmp_path, device="cpu", min_detection_confidence=None)
    at_minimum = admit(parse_event(person_event("edge") | {"confidence": 0.5}), on, read_key=lambda key: None)
    weak = admit(parse_event(person_event("weak") | {"confidence": 0.2}), on, read_key=lambda key: None)
    assert screen(at_minimum, on) is None and "threat" in plan(at_minimum, on)
    assert plan(weak, on) == [] and "threat" in plan(weak, off) and screen(weak, off) is None


def test_the_note_is_one_line_and_counts_no_fact():
    note = {"below_threshold": True, "confidence": 0.2, "min_confidence": 0.5}
    prompt = build_risk_prompt({"camera_id": "cam", "detection_type": "person", "confidence": 0.2},
                               {"screening": note}, {})
    assert prompt.count("Below threshold") == 1 and count_context_attributes({"screening": note}) == 0
    assert "Below threshold" not in build_risk_prompt({}, {"screening": {"below_threshold": False}}, {})
