"""Licence-plate text as the household compares it: upper-case ASCII letters and digits, nothing else."""

from __future__ import annotations

import re
import unicodedata

MIN_PLATE_CHARS = 2
MAX_PLATE_CHARS = 10  # the longest plates in use (vanity and some European formats) stay under this
MAX_INPUT_CHARS = 64  # OCR output longer than this is not one plate
NOT_PLATE_CHARS = re.compile(r"[^A-Z0-9]")


def normalise_plate(text: str | None) -> str | None:
    """'abc-123 ', 'ABC 123', 'ａｂｃ１２３' -> 'ABC123'; None when what is left is not 2-10 letters and digits.

    Compatibility forms are folded first (NFKC: full-width letters, ligatures), then everything but A-Z and 0-9
    is dropped: separators, spaces, punctuation, accents' letters that have no ASCII form. Exact matching of
    registered vehicles compares these strings.
    """
    if not isinstance(text, str) or len(text) > MAX_INPUT_CHARS:
        return None
    folded = unicodedata.normalize("NFKC", text).upper()
    plate = NOT_PLATE_CHARS.sub("", folded)
    return plate if MIN_PLATE_CHARS <= len(plate) <= MAX_PLATE_CHARS else None
