"""Plate normalisation: what OCR reads and what an operator types meet as the same upper-case alphanumerics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.plate_text import MAX_PLATE_CHARS, normalise_plate, plates_in_text_regions

plates = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=2, max_size=MAX_PLATE_CHARS)
separators = st.text(alphabet=" -.·_/\t", max_size=3)


@pytest.mark.parametrize(("typed", "plate"), [
    ("abc-123", "ABC123"), (" 7xyz 123 ", "7XYZ123"), ("ＡＢＣ１２３", "ABC123"), ("b·mw 1", "BMW1"),
    ("DANA", "DANA"), ("ab", "AB"),
])
def test_plates_normalise_to_upper_case_alphanumerics(typed, plate):
    assert normalise_plate(typed) == plate


@pytest.mark.parametrize("junk", ["", "-", "A", "  ", "ABCDEFGHIJK1", "🚗", None, 123, "x" * 65])
def test_text_that_is_no_plate_gives_none(junk):
    assert normalise_plate(junk) is None


@given(st.text(max_size=80))
def test_the_result_is_none_or_two_to_ten_upper_case_alphanumerics_and_stable(text):
    plate = normalise_plate(text)
    if plate is not None:
        assert 2 <= len(plate) <= MAX_PLATE_CHARS
        assert plate.isascii() and plate.isalnum() and plate == plate.upper()
        assert normalise_plate(plate) == plate


@given(plates, st.lists(separators, min_size=1, max_size=12), st.booleans())
def test_case_and_separators_never_change_a_plate(plate, gaps, lower):
    typed = "".join(gap + char for gap, char in zip(gaps * len(plate), plate))
    assert normalise_plate(typed.lower() if lower else typed) == plate


def quad(x1: float, y1: float, x2: float, y2: float) -> list[float]:
    return [x1, y1, x2, y1, x2, y2, x1, y2]


def test_plates_are_found_among_the_scene_text_inside_the_vehicle_box():
    regions = {"labels": ["ABC 123", "</s>AMAZON", "7XYZ123", "FORD", "!!"],
               "quad_boxes": [quad(120, 260, 180, 280), quad(20, 20, 90, 40), quad(600, 300, 660, 320),
                              quad(130, 150, 170, 160), quad(140, 200, 150, 210)]}
    reads = plates_in_text_regions(regions, (100, 100, 300, 300))
    assert [read["plate"] for read in reads] == ["ABC123", "FORD"]  # lowest first; the van's plate is outside
    assert reads[0] == {"plate": "ABC123", "text": "ABC 123", "quad_box": quad(120, 260, 180, 280)}


def test_no_text_regions_no_plates():
    assert plates_in_text_regions(None, (0, 0, 10, 10)) == []
    assert plates_in_text_regions({"labels": ["ABC123"], "quad_boxes": [[1, 2]]}, (0, 0, 10, 10)) == []
