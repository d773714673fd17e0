"""X-CLIP action recognition: frame sampling, context crops, the action table, and tiny-model inference."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from prompt_formatting import format_ondemand_enrichment_context
from scripts.fixtures.weights.tokenizers import build_word_clip_tokenizer
from workers.models.action import (
    ActionModel,
    action_report,
    context_box,
    load_actions,
    rank_actions,
    sample_frame_indices,
)
from workers.models.base import InferenceSkipped, ModelInput
from workers.settings import ZooSettings

BOX = (40.0, 30.0, 80.0, 110.0)


def frames(count: int, size: tuple[int, int] = (160, 120)) -> list[Image.Image]:
    sequence = []
    for i in range(count):
        frame = Image.new("RGB", size, (30, 40, 50))
        frame.paste((200, 60 + 15 * i, 40), (40 + 4 * i, 30, 80 + 4 * i, 110))  # a person moving right
        sequence.append(frame)
    return sequence


def event(count: int) -> ModelInput:
    sequence = frames(max(count, 1))
    return ModelInput(sequence[0], BOX, frames=sequence[:count])


@pytest.fixture(scope="module")
def action(tiny_model):
    model = ActionModel(tiny_model("action"), "cpu")
    model.load()
    yield model
    model.unload()


def test_the_seed_lists_twelve_security_actions():
    actions = load_actions()
    assert len(actions) == 12 and len(set(actions)) == 12
    assert "person climbing over fence" in actions and "person using tool on door" in actions


def test_action_table_can_be_replaced_through_the_zoo_settings(tmp_path, monkeypatch):
    table = tmp_path / "actions.toml"
    table.write_text('actions = ["person waving", "person sitting", "person jumping"]\n')
    expected = ("person waving", "person sitting", "person jumping")
    assert ActionModel("unused", "cpu", ZooSettings(action_prompts_file=table)).actions == expected
    monkeypatch.setenv("ACTION_PROMPTS_FILE", str(table))  # read by the settings object, not by the family
    assert ActionModel("unused", "cpu").actions == expected
    table.write_text('actions = ["person waving", "person waving"]\n')
    with pytest.raises(ValueError, match="duplicates"):
        load_actions(table)


@given(available=st.integers(1, 200), wanted=st.integers(1, 64))
def test_sampling_picks_exactly_wanted_frames_in_order(available, wanted):
    indices = sample_frame_indices(available, wanted)
    assert len(indices) == wanted
    assert indices == sorted(indices) and 0 <= indices[0] and indices[-1] < available
    if available >= wanted:
        assert len(set(indices)) == wanted  # no repeats when there are enough frames
    else:
        assert set(indices) == set(range(available))  # every frame used, some repeated


def test_sampling_spreads_over_the_sequence():
    assert sample_frame_indices(10, 4) == [1, 3, 6, 8]
    assert sample_frame_indices(2, 4) == [0, 0, 1, 1]
    with pytest.raises(ValueError):
        sample_frame_indices(0, 4)


def test_context_box_is_a_square_twice_the_box_scaled_to_the_frame():
    assert context_box((40, 30, 80, 110), (160, 120), (160, 120)) == (0, 0, 140, 120)
    assert context_box((100, 100, 120, 140), (400, 400), (400, 400)) == (70, 80, 150, 160)
    assert context_box((100, 100, 120, 140), (400, 400), (200, 200)) == (35, 40, 75, 80)


def test_report_has_the_seed_keys_with_every_action_scored_highest_first():
    report = action_report(("a", "b", "c", "d"), [0.1, 0.4, 0.2, 0.3], frames_used=4)
    assert report == {
        "top_action": "b", "confidence": 0.4,
        "all_scores": {"b": 0.4, "d": 0.3, "c": 0.2, "a": 0.1},
        "top_actions": [{"action": "b", "score": 0.4}, {"action": "d", "score": 0.3}, {"action": "c", "score": 0.2}],
        "frames_used": 4,
    }
    assert list(report["all_scores"]) == ["b", "d", "c", "a"]


def test_the_seed_formatter_names_the_primary_action_and_the_runners_up():
    actions = load_actions()
    probabilities = [0.02] * len(actions)
    probabilities[actions.index("person picking lock")] = 0.55
    probabilities[actions.index("person using tool on door")] = 0.16
    probabilities[actions.index("person hiding")] = 0.09
    report = action_report(actions, probabilities, frames_used=8)
    seed_view = {key: report[key] for key in ("top_action", "confidence", "all_scores")}
    text = format_ondemand_enrichment_context({"action": seed_view})
    assert '- **Primary action**: "person picking lock"' in text and "- **Confidence**: 55%" in text
    assert text.endswith('- **Alternative interpretations**: "person using tool on door" (16%), "person hiding" (9%)')


def test_rank_actions_keeps_the_best_three_highest_first():
    ranked = rank_actions(("a", "b", "c", "d"), [0.1, 0.4, 0.2, 0.3])
    assert ranked == [{"action": "b", "score": 0.4}, {"action": "d", "score": 0.3}, {"action": "c", "score": 0.2}]


def test_tiny_tokenizer_spells_each_action_word_as_one_token():
    tokenizer = build_word_clip_tokenizer(["person climbing over fence"])
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("person climbing over fence").input_ids)
    assert tokens == ["<|startoftext|>", "person</w>", "climbing</w>", "over</w>", "fence</w>", "<|endoftext|>"]
    assert tokenizer.convert_tokens_to_ids("<|endoftext|>") == len(tokenizer) - 1  # X-CLIP pools at argmax(ids)


def test_no_frames_skips_with_a_reason(action):
    with pytest.raises(InferenceSkipped, match="no frames"):
        action.infer(event(0))


@pytest.mark.parametrize(("given_frames", "distinct"), [(2, 2), (4, 4), (9, 4)])
def test_any_number_of_frames_gives_three_ranked_actions(action, given_frames, distinct):
    result = action.infer(event(given_frames))
    assert set(result) == {"top_action", "confidence", "all_scores", "top_actions", "frames_used"}
    assert list(result["all_scores"]) == sorted(action.actions, key=lambda a: -result["all_scores"][a])
    assert set(result["all_scores"]) == set(action.actions), "every action is scored"
    assert sum(result["all_scores"].values()) == pytest.approx(1.0, abs=1e-3)
    assert result["all_scores"][result["top_action"]] == result["confidence"] == max(result["all_scores"].values())
    assert result["frames_used"] == distinct
    assert len(result["top_actions"]) == 3
    scores = [entry["score"] for entry in result["top_actions"]]
    assert scores == sorted(scores, reverse=True)
    assert result["top_action"] == result["top_actions"][0]["action"] and result["confidence"] == scores[0]
    assert all(entry["action"] in action.actions for entry in result["top_actions"])
    assert 0.0 < sum(scores) <= 1.0 + 1e-3
    assert json.loads(json.dumps(result)) == result


def test_clip_has_exactly_the_models_frame_count_cut_to_the_context_box(action):
    clip, distinct = action.clip_frames(event(2))
    assert len(clip) == action.num_frames == 4 and distinct == 2
    assert all(frame.size == (140, 120) for frame in clip)


def test_cached_prompt_embeddings_score_like_the_full_forward_pass(action):
    import torch

    clip, _ = action.clip_frames(event(3))
    batch = action.processor(text=list(action.actions), videos=[clip], return_tensors="pt", padding=True)
    with torch.inference_mode():
        reference = action.model(**batch).logits_per_video
        cached = action.video_logits(batch["pixel_values"])
    torch.testing.assert_close(cached, reference, atol=1e-5, rtol=1e-5)
