"""Defensive readers turning partial model output (numbers, boxes, times) into text, or None to leave the line out."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from prompt_formatting.untrusted import quoted


def mapping(value: Any) -> dict:
    """The value if it is a dict, else an empty one."""
    return value if isinstance(value, dict) else {}


def entries(value: Any) -> list:
    """The value if it is a list or tuple, else an empty list."""
    return list(value) if isinstance(value, (list, tuple)) else []


def number(value: Any) -> float | None:
    """A finite int/float (bools excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def count(value: Any) -> int | None:
    """A non-negative whole number, else None."""
    n = number(value)
    return int(n) if n is not None and n >= 0 and n == int(n) else None


def percent(value: Any) -> str | None:
    """A 0..1 score as a whole percentage ("87%"); out-of-range or missing scores give None."""
    n = number(value)
    return f"{n:.0%}" if n is not None and 0.0 <= n <= 1.0 else None


def box(value: Any) -> str | None:
    """A pixel box [x1, y1, x2, y2] rounded to whole pixels."""
    coords = [number(v) for v in entries(value)]
    if len(coords) != 4 or any(c is None for c in coords):
        return None
    return "[" + ", ".join(f"{c:.0f}" for c in coords) + "]"


def moment(value: Any) -> str | None:
    """A time (epoch seconds, ISO string or datetime) as 'YYYY-MM-DD HH:MM:SS UTC'; unparsable strings quoted."""
    when: datetime | None = None
    if isinstance(value, datetime):
        when = value
    elif number(value) is not None:
        try:
            when = datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return quoted(value, "name")
    if when is None:
        return None
    if when.tzinfo is None:
        return when.strftime("%Y-%m-%d %H:%M:%S")
    try:
        return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError):  # an offset that takes it past year 1 or 9999 in UTC: shown as given
        return when.strftime("%Y-%m-%d %H:%M:%S %z")


def distinct(values: list[str]) -> list[str]:
    """Distinct strings in first-seen order, repeated ones marked with their count ('"person" x2')."""
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return [f"{value} x{n}" if n > 1 else value for value, n in counts.items()]


def yes_no(value: Any) -> str | None:
    """A bool as "yes"/"no"."""
    return ("yes" if value else "no") if isinstance(value, bool) else None


def out_of_100(value: Any) -> str | None:
    """A 0..100 score as "72/100"."""
    n = number(value)
    return f"{n:.0f}/100" if n is not None and 0.0 <= n <= 100.0 else None
