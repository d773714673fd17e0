"""The prompt's own words as data: threat severity, high-risk objects, ages, labels, scene tags and distances."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prompt_formatting import (
    DEFAULT_FAR_M,
    DEFAULT_NEAR_M,
    SCENE_TAG_PROMPTS,
    approximate_distance_m,
    depth_range_m,
    describe_age,
    parse_depth_calibration,
    threat_severity,
)
from prompt_formatting.vocabulary import is_high_risk_object, readable_label, singular


@pytest.mark.parametrize(
    "threat_type, severity",
    [
        ("gun", "critical"), ("Pistol", "critical"), ("rifle", "critical"), ("handgun", "critical"),
        ("firearm", "critical"), ("shotgun", "critical"), ("grenade", "critical"), ("Explosive", "critical"),
        ("knife", "high"), ("kitchen knives", "high"), ("blade", "high"), ("machete", "high"),
        ("bat", "medium"), ("baseball_bat", "medium"), ("crowbar", "medium"), ("hammer", "medium"),
        ("tool", "medium"),
    ],
)
def test_threat_severity_by_weapon_class(threat_type, severity):
    assert threat_severity(threat_type) == severity


@pytest.mark.parametrize("threat_type", ["slingshot", "", None, 7, "<unk>"])
def test_unknown_threat_types_default_to_high(threat_type):
    assert threat_severity(threat_type) == "high"


def test_a_type_naming_two_weapons_takes_the_more_severe():
    assert threat_severity("knife and gun") == "critical"


@pytest.mark.parametrize("label", ["knife", "Kitchen Knives", "gun", "pistol", "rifle", "handgun", "crowbar",
                                   "power tool", "tools", "weapon"])
def test_high_risk_object_words_match_whole_words(label):
    assert is_high_risk_object(label)


@pytest.mark.parametrize("label", ["stool", "toolbox", "gunny sack", "begun", "door", "person", ""])
def test_words_containing_a_risk_word_are_not_flagged(label):
    assert not is_high_risk_object(label)


@pytest.mark.parametrize(
    "value, words",
    [
        (34, "adult (about 30-39)"),
        ("34", "adult (about 30-39)"),
        (5, "child (about 0-9)"),
        ("25-32", "young adult to adult (25-32)"),
        ("(38-43)", "adult (38-43)"),
        ("60+", "middle-aged to senior (60 or older)"),
        ("young_adult", "young adult (about 18-29)"),
        ("middle_aged", "middle-aged (about 45-64)"),
        ("senior", "senior (about 65 or older)"),
        ("Teenager", "teenager (about 13-17)"),
    ],
)
def test_age_in_words_with_its_range(value, words):
    assert describe_age(value) == words


@pytest.mark.parametrize("value", [None, "", "unknown", "old-ish mystery", -3, 400, True, "45-30"])
def test_ages_this_cannot_read_give_none(value):
    assert describe_age(value) is None


@pytest.mark.parametrize(
    "raw, normalised",
    [("Pickup_Trucks", "pickup truck"), ("CARS", "car"), ("buses", "bus"), ("bus", "bus"), ("Dogs", "dog"),
     ("lorries", "lorry"), ("boxes", "box"), ("horses", "horse"), ("work-van", "work van"), (" SUV ", "suv")],
)
def test_labels_are_normalised_to_lower_case_singular_words(raw, normalised):
    assert readable_label(raw) == normalised


def test_singular_leaves_singular_words_alone():
    assert [singular(w) for w in ("car", "glass", "bus", "gas", "person")] == ["car", "glass", "bus", "gas", "person"]


def test_scene_tag_prompts_are_a_short_list_of_distinct_phrases():
    assert 8 <= len(SCENE_TAG_PROMPTS) <= 16
    assert len(set(SCENE_TAG_PROMPTS)) == len(SCENE_TAG_PROMPTS)
    assert "a delivery at the front door" in SCENE_TAG_PROMPTS


def test_distance_runs_from_near_to_far_in_inverse_depth():
    assert approximate_distance_m(0.0) == pytest.approx(DEFAULT_NEAR_M)
    assert approximate_distance_m(1.0) == pytest.approx(DEFAULT_FAR_M)
    # Half-way in inverse depth is the harmonic mean of near and far, not their average.
    assert approximate_distance_m(0.5, 1.0, 20.0) == pytest.approx(2 / (1 / 1.0 + 1 / 20.0))
    assert approximate_distance_m(-0.2, 2.0, 30.0) == pytest.approx(2.0)  # clamped


@pytest.mark.parametrize("near, far", [(0.0, 10.0), (5.0, 2.0), (-1.0, 3.0), (1.0, math.inf)])
def test_distance_rejects_a_bad_calibration(near, far):
    with pytest.raises(ValueError):
        approximate_distance_m(0.5, near, far)


@settings(max_examples=100, deadline=None)
@given(st.floats(0, 1), st.floats(0, 1), st.floats(0.1, 5), st.floats(1, 100))
def test_distance_grows_with_relative_depth_and_stays_within_the_calibration(a, b, near, extra):
    far = near + extra
    low, high = sorted((a, b))
    assert near - 1e-9 <= approximate_distance_m(low, near, far) <= approximate_distance_m(high, near, far) <= far + 1e-9


def test_depth_calibration_setting_is_parsed_per_camera():
    calibration = parse_depth_calibration(" front_door=0.8:12, driveway=2:40 ,")
    assert calibration == {"front_door": (0.8, 12.0), "driveway": (2.0, 40.0)}
    assert depth_range_m("driveway", calibration) == (2.0, 40.0)
    assert depth_range_m("backyard", calibration) == (DEFAULT_NEAR_M, DEFAULT_FAR_M)
    assert parse_depth_calibration("") == {}


@pytest.mark.parametrize("text", ["front_door", "front_door=1", "=1:2", "gate=5:2", "gate=a:b", "gate=0:3"])
def test_a_bad_depth_calibration_entry_is_named(text):
    with pytest.raises(ValueError, match="depth calibration entry"):
        parse_depth_calibration(text)
