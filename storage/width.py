"""Width folding of page text: NFKC (full-width forms, ideographic space, circled digits ...) with
the dash-like characters people type inside phone numbers made ASCII.

``unicodedata.normalize`` takes milliseconds on a long Chinese page. Text without combining marks,
Hangul or astral characters (where NFKC is more than a per-character mapping) is folded with a
per-character table instead, which gives the same result.
"""

from __future__ import annotations

import re
import unicodedata

# Dash-like characters NFKC leaves alone but people type inside phone numbers.
_DASHES = str.maketrans({c: "-" for c in "‐‑‒–—―−"})
_DASH_RUN = re.compile("[‐‑‒–—―−]")


def _bmp_nfkc_table() -> dict[int, str]:
    """NFKC of every Basic Multilingual Plane character that NFKC changes, as a str.translate table."""
    table = {}
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        folded = unicodedata.normalize("NFKC", char)
        if folded != char:
            table[code] = folded
    return table


_NFKC_TABLE: dict[int, str] | None = None
_FOLD: dict[int, str] | None = None  # NFKC, then dashes made ASCII, of every character either changes
_FOLD_OR_CONTEXT: re.Pattern[str] | None = None


def _char_class(codes: list[int]) -> str:
    """A regex character class for sorted code points, as ranges."""
    ranges, start, prev = [], codes[0], codes[0]
    for code in codes[1:] + [-1]:
        if code != prev + 1:
            ranges.append(re.escape(chr(start)) + (f"-{re.escape(chr(prev))}" if prev > start else ""))
            start = code
        prev = code
    return "[" + "".join(ranges) + "]"


# Where NFKC is more than a per-character mapping: combining marks (composition across characters),
# Hangul jamo (which compose into syllables) and anything outside the BMP.
_CONTEXT_CHARS = (
    "\u0300-\u036f\u0483-\u0489\u0591-\u05c7\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed"
    "\u0900-\u0d7f\u0e31-\u0e4e\u0eb1-\u0ecd\u0f18-\u0fc6\u1000-\u11ff\u1ab0-\u1aff\u1b00-\u1b7f"
    "\u1dc0-\u1dff\u20d0-\u20ff\u2cef-\u2cf1\u2d7f\u2de0-\u2dff\u302a-\u302f\u3099-\u309c"
    "\u3130-\u318f\ua66f-\ua69f\ua6f0\ua6f1\ua800-\uabff\uac00-\ud7ff\ufb1e\ufe00-\ufe0f"
    "\ufe20-\ufe2f\uff9e\uff9f\uffa0-\uffdc\U00010000-\U0010ffff"
)
_NFKC_CONTEXT = re.compile(f"[{_CONTEXT_CHARS}]")


def _ascii_dashes(text: str) -> str:
    # str.translate walks a long non-ASCII string one dict lookup per character; most have no dash.
    return text.translate(_DASHES) if _DASH_RUN.search(text) else text


def width_fold(text: str) -> str:
    """NFKC of ``text`` with dashes made ASCII."""
    global _NFKC_TABLE, _FOLD, _FOLD_OR_CONTEXT
    if text.isascii():
        return text
    if _FOLD_OR_CONTEXT is None:
        _NFKC_TABLE = _bmp_nfkc_table()
        dashes = [ord(char) for char in "‐‑‒–—―−"]
        _FOLD = {code: _NFKC_TABLE.get(code, chr(code)).translate(_DASHES) for code in {*_NFKC_TABLE, *dashes}}
        _FOLD_OR_CONTEXT = re.compile(_char_class(sorted(_FOLD))[:-1] + _CONTEXT_CHARS + "]+")
    runs = _FOLD_OR_CONTEXT.findall(text)  # one pass finds what needs folding and what forbids the table
    if not runs:
        return text
    chars = set("".join(runs))
    if any(_NFKC_CONTEXT.match(char) for char in chars):
        return _ascii_dashes(unicodedata.normalize("NFKC", text))
    # No folded value holds a character that folding changes (checked by the tests), so replacing one
    # distinct character after another gives the same string as mapping each in one pass.
    fold = _FOLD
    for char in chars:
        text = text.replace(char, fold[ord(char)])
    return text
