"""Width folding of page text: NFKC (full-width forms, ideographic space, circled digits ...) with
the dash-like characters people type inside phone numbers made ASCII.

``unicodedata.normalize`` takes milliseconds on a long Chinese page. Text without combining marks,
Hangul or astral characters (where NFKC is more than a per-character mapping) is folded with a
per-character table instead, which gives the same result. Which characters a text holds is read from a
code-point lookup table with numpy (a regex character class of thousands of ranges costs ~15 ns a
character; the lookup ~1).
"""

from __future__ import annotations

import re
import unicodedata

import numpy

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
# Per code point: _FOLDS if folding changes the character, _CONTEXT if NFKC needs its neighbours.
_FLAGS: numpy.ndarray | None = None
_FOLDS, _CONTEXT = 1, 2


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


def _build() -> None:
    global _NFKC_TABLE, _FOLD, _FLAGS
    _NFKC_TABLE = _bmp_nfkc_table()
    dashes = [ord(char) for char in "‐‑‒–—―−"]
    _FOLD = {code: _NFKC_TABLE.get(code, chr(code)).translate(_DASHES) for code in {*_NFKC_TABLE, *dashes}}
    flags = numpy.zeros(0x110000, dtype=numpy.uint8)
    flags[sorted(_FOLD)] = _FOLDS
    for first, last in _ranges(_CONTEXT_CHARS):
        flags[first:last + 1] |= _CONTEXT
    _FLAGS = flags


def _ranges(chars: str) -> list[tuple[int, int]]:
    """The (first, last) code points of a regex class body made of characters and ``a-b`` ranges."""
    found, i = [], 0
    while i < len(chars):
        if i + 2 < len(chars) and chars[i + 1] == "-":
            found.append((ord(chars[i]), ord(chars[i + 2])))
            i += 3
        else:
            found.append((ord(chars[i]), ord(chars[i])))
            i += 1
    return found


def code_points(text: str) -> numpy.ndarray:
    """The code points of ``text`` (lone surrogates included), index for index."""
    return numpy.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=numpy.uint32)


def width_fold(text: str) -> str:
    """NFKC of ``text`` with dashes made ASCII."""
    if text.isascii():
        return text
    if _FLAGS is None:
        _build()
    assert _FLAGS is not None and _FOLD is not None
    codes = code_points(text)
    flags = _FLAGS[codes]
    if not flags.any():
        return text
    if (flags & _CONTEXT).any():
        return _ascii_dashes(unicodedata.normalize("NFKC", text))
    # No folded value holds a character that folding changes (checked by the tests), so replacing one
    # distinct character after another gives the same string as mapping each in one pass.
    fold = _FOLD
    for code in numpy.unique(codes[flags != 0]).tolist():
        text = text.replace(chr(code), fold[code])
    return text
