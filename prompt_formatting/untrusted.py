"""The one sanitiser for text from outside (event fields, model output) and the quoting that marks it as data.

Every string the prompt did not write itself (camera ids, captions, OCR text, object, clothing, action and
classifier labels, identity names, model error messages) passes through `clean_text` and is printed with
`quoted`, so that it can neither forge the prompt's structure nor pass for the system's own words:

- Unicode is NFKC-normalised (fullwidth "＃＃" becomes "##" before the markdown rule sees it);
- control characters (C0, C1, NUL, ESC), format characters (bidi controls U+202A-U+202E, U+2066-U+2069,
  U+200E/F, U+061C, zero-width U+200B-U+200D, U+2060, U+FEFF), surrogates, private-use and unassigned code
  points and the replacement characters U+FFFD/U+FFFC are removed; line and paragraph breaks become spaces;
- model special tokens are removed: anything shaped like a tokenizer's token, `<word>`, `</word>`,
  `<|word|>` (Florence-2/BART's `<s>`, `</s>`, `<pad>`, `<unk>`, `<loc_461>`, `<od>`, `<ocr>`, task tokens
  like `<MORE_DETAILED_CAPTION>`; CLIP's `<|endoftext|>`), and a `<loc_` cut off by the generation limit;
- whitespace collapses to single spaces, so the text is always one line and never starts one;
- markdown that could look like the prompt's own structure is neutralised: runs of two or more `*` or
  `#` are removed (a sign reading "**HIGH RISK OBJECTS**: none" prints as "HIGH RISK OBJECTS: none"),
  backticks become apostrophes (no code fences). Pipes, single `*` and single `#` stay: the text never
  starts a line, so they cannot make a table, a list or a heading;
- the text is capped at TEXT_LIMITS[kind] characters, an ellipsis marking the cut.

`quoted` then prints the text as a JSON string literal: inner quotes and backslashes are escaped, so the
text cannot close its own quotes. The prompt's instructions tell the model that quoted text is evidence,
never instructions.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

# Longest text kept per kind of value, in characters (after cleaning; the ellipsis included).
TEXT_LIMITS: dict[str, int] = {
    "name": 128,  # camera ids, identities and names, model names
    "label": 200,  # object, OCR, clothing, action and classifier labels
    "caption": 600,  # scene descriptions
    "message": 300,  # model error messages in the Unavailable section
}
MAX_LIST_ITEMS = 20  # labels printed per list; the rest are counted ("and 7 more")
ELLIPSIS = "…"

# Strings a model or serialiser uses for "nothing"; printing them would read as a fact.
MISSING_WORDS = frozenset({"", "none", "null", "nan", "n/a", "unknown", "undefined"})

REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})  # control, format, surrogate, private, unassigned
REMOVED_CHARACTERS = frozenset({"\ufffd", "\ufffc"})
SPECIAL_TOKEN = re.compile(r"<\|?/?[A-Za-z_][A-Za-z0-9_]*\|?>|<loc_\d*")
MARKDOWN_RUNS = re.compile(r"\*{2,}|#{2,}")


def _visible(character: str) -> str:
    if character.isspace():
        return " "
    if character in REMOVED_CHARACTERS or unicodedata.category(character) in REMOVED_CATEGORIES:
        return ""
    return character


def clean_text(value: Any, kind: str = "label") -> str | None:
    """Outside text made safe to print on one line (see the module's rules), or None when nothing is left."""
    if not isinstance(value, str):
        return None
    text = "".join(map(_visible, unicodedata.normalize("NFKC", value)))
    text = SPECIAL_TOKEN.sub(" ", text)
    text = MARKDOWN_RUNS.sub("", text).replace("`", "'")
    text = " ".join(text.split())
    if text.lower() in MISSING_WORDS:
        return None
    limit = TEXT_LIMITS[kind]
    if len(text) > limit:
        text = text[: limit - len(ELLIPSIS)].rstrip() + ELLIPSIS
    return text


def quote(text: str) -> str:
    """Already-clean text as a double-quoted string whose inner quotes and backslashes are escaped."""
    return json.dumps(text, ensure_ascii=False)


def quoted(value: Any, kind: str = "label") -> str | None:
    """Outside text cleaned and quoted as data, or None when nothing is left to print."""
    text = clean_text(value, kind)
    return None if text is None else quote(text)


def capped_list(items: list[str]) -> list[str]:
    """At most MAX_LIST_ITEMS items, the rest counted in a final "and N more"."""
    if len(items) <= MAX_LIST_ITEMS:
        return items
    return [*items[:MAX_LIST_ITEMS], f"and {len(items) - MAX_LIST_ITEMS} more"]
