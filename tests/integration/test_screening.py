"""Through the real pool: a detection below MIN_DETECTION_CONFIDENCE gets a short stored result, no model run; and
Florence-2's answer reaches the result and the prompt parsed by its processor (no special tokens, repeated labels
counted once)."""

from __future__ import annotations

import json
import re

import pytest

from prompt_formatting.untrusted import clean_text
from scripts.fixtures.sample_events import person_event

pytestmark = pytest.mark.integration

# A whole special token, or what is left of a location token the parse split ("loc_461>", as make demo showed).
SPECIAL_TOKEN = re.compile(r"<(loc_\d+|/?s|pad|unk|poly|sep|[A-Z_]{3,})>|loc_\d+")


def test_a_detection_below_the_minimum_confidence_gets_a_short_result(pool):
    result = pool.client.enrich(person_event("scr-weak") | {"confidence": 0.3}, timeout=120)
    assert result["status"] == "complete" and result["models"] == {} and result["errors"] == {}
    assert result["enrichment"]["screening"] == {"below_threshold": True, "confidence": 0.3, "min_confidence": 0.5}
    assert "- **Below threshold**: detector confidence 30% is under the minimum of 50%" in result["prompt"]
    assert pool.client.stored("scr-weak") == result
    assert pool.client.redis.exists("frame:scr-weak:full") == 0, "no frame is kept for a screened detection"


def test_florence_output_through_the_pool_has_no_special_tokens_and_counts_repeats(pool):
    result = pool.client.enrich(person_event("scr-florence"), timeout=300)
    assert result["models"]["florence"]["status"] == "ok", result["models"]["florence"]
    florence = result["enrichment"]["scene"]["florence"]
    assert not SPECIAL_TOKEN.search(json.dumps(florence)), florence
    assert not SPECIAL_TOKEN.search(result["prompt"])
    for key, title in (("security_objects", "Objects Detected"), ("text_regions", "Visible Text")):
        labels = [clean_text(label) for label in florence[key]["labels"]]
        labels = [label for label in labels if label]
        if not labels:
            continue
        line = next(line for line in result["prompt"].splitlines() if line.startswith(f"**{title}:**"))
        shown = re.findall(r'("(?:[^"\\]|\\.)*")(?: x(\d+))?', line)
        names = [json.loads(name) for name, _ in shown]
        assert len(names) == len(set(names)), f"a label printed twice: {line}"
        for name, times in shown:
            assert int(times or 1) == labels.count(json.loads(name)), (name, times, labels)
