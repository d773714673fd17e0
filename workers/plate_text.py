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


def plates_in_text_regions(text_regions: dict | None, box: tuple[float, float, float, float]) -> list[dict]:
    """Plate candidates among Florence-2's OCR_WITH_REGION reads whose centre lies in a vehicle's box.

    The scene model already reads the frame's text; a read inside the vehicle box that normalises to a plate is a
    candidate for the household's exact-plate match (no plate model needed), nearest the box's bottom first (plates
    sit low on a vehicle; a dealer's sticker or a badge sits higher). Each is {"plate", "text", "quad_box"}.
    """
    if not text_regions:
        return []
    labels = text_regions.get("labels") or []
    quads = text_regions.get("quad_boxes") or []
    x1, y1, x2, y2 = box
    found = []
    for text, quad in zip(labels, quads):
        if not isinstance(quad, (list, tuple)) or len(quad) != 8:
            continue
        cx, cy = sum(quad[0::2]) / 4.0, sum(quad[1::2]) / 4.0
        plate = normalise_plate(text) if isinstance(text, str) else None
        if plate is not None and x1 <= cx <= x2 and y1 <= cy <= y2:
            found.append({"plate": plate, "text": text, "quad_box": list(quad), "_low": cy})
    found.sort(key=lambda read: read["_low"], reverse=True)
    return [{k: v for k, v in read.items() if k != "_low"} for read in found]
