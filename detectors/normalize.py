"""Text normalisation with an offset map back to the original characters.

The 1:1 steps (NFKC per character, lower case, traditional to simplified per character, Chinese
and financial numerals to ASCII digits) are fused into one code-point table applied with numpy.
Characters the table cannot map one-to-one get a marker code:

* ``DROP_BETWEEN_CJK`` — spaces, separators such as ``* . - / |``, emoji and symbols: removed when a
  run of them sits between two Han characters (数 学, 数*学, 数👍学), otherwise kept as themselves;
* ``DROP_ALWAYS`` — zero-width characters and emoji modifiers, always removed;
* ``EXPAND`` — characters whose normal form is longer than one character (㈠ → (1)).

Only those positions are visited in Python, and only they need the offset map.  Phrase-level
traditional-to-simplified conversion (OpenCC ``t2s``) runs only when the text contains traditional
characters, and is used line by line only where it keeps the length (so it stays char-aligned).
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import opencc

DROP_BETWEEN_CJK = 1
DROP_ALWAYS = 2
EXPAND = 3

_DIGITS = str.maketrans("〇零一二三四五六七八九壹贰叁肆伍陆柒捌玖", "00123456789123456789")
_SEPARATORS = set(" \t\u3000*.-/_|~+^=#&\\`'·•・‧∙°")
_ALWAYS_DROP = set("\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u20e3")
_ALWAYS_DROP.update(chr(c) for c in range(0xFE00, 0xFE10))
_ALWAYS_DROP.update(chr(c) for c in range(0x1F3FB, 0x1F400))
_HAN_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FFFF))
_TABLE_SIZE = 0x110000
TRADITIONAL_BIT = 1 << 31  # set in ``CharTable.flagged`` for characters the t2s step changes


def is_han(ch: str) -> bool:
    c = ord(ch)
    return 0x4E00 <= c <= 0x9FFF or 0x3400 <= c <= 0x4DBF or 0xF900 <= c <= 0xFAFF or 0x20000 <= c <= 0x2FFFF


@lru_cache(maxsize=1)
def _converter() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def _t2s_chars() -> dict[str, str]:
    """Per-character traditional→simplified map taken from OpenCC (single characters only)."""
    chars = [chr(c) for lo, hi in _HAN_RANGES[:3] for c in range(lo, hi + 1)]
    converted = _converter().convert("\n".join(chars)).split("\n")
    if len(converted) != len(chars):  # OpenCC changed the separators: fall back char by char
        converted = [_converter().convert(c) for c in chars]
    return {a: b for a, b in zip(chars, converted) if len(b) == 1 and a != b}


def _is_symbol(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat in ("So", "Sk", "Sm") or 0x1F000 <= ord(ch) <= 0x1FAFF


def _nontrivial(codes: list[int], t2s: dict[str, str]) -> list[int]:
    """The codes ``CharTable._set`` would change: the rest already map to themselves in the identity
    table, and sifting them out in bulk spares ~70,000 calls at start-up."""
    chars = [chr(c) for c in codes]
    forms = [unicodedata.normalize("NFKC", ch).lower() for ch in chars]
    special = _ALWAYS_DROP | _SEPARATORS | set(t2s) | {chr(k) for k in _DIGITS}
    return [c for c, ch, form in zip(codes, chars, forms)
            if form != ch or ch in special or _is_symbol(ch)]


class CharTable:
    """The fused per-code-point table plus the side tables for markers."""

    def __init__(self) -> None:
        t2s = _t2s_chars()
        table = np.arange(_TABLE_SIZE, dtype=np.uint32)
        trad = np.zeros(_TABLE_SIZE, dtype=bool)
        self._plain: dict[int, int] = {}  # code -> its entry without the per-char t2s step
        self.expansions: dict[int, str] = {}
        self.kept_form: dict[int, str] = {}
        codes = [c for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
        codes += list(range(0x1D400, 0x1D800)) + list(range(0x1F000, 0x1FB00)) + list(range(0x2F800, 0x2FA20))
        for c in _nontrivial(codes, t2s):
            self._set(table, trad, c, t2s)
        for c in range(0, 4):  # the marker codes themselves never survive from the input
            table[c] = ord(" ")
        self.table = table
        self.traditional = trad
        # The table with TRADITIONAL_BIT on traditional characters: one lookup both maps a text
        # and tells whether it needs the phrase-level conversion first.
        self.flagged = table | (trad.astype(np.uint32) << 31)
        # The same table without per-char t2s, for text already converted phrase by phrase.
        self.table_phrase = table.copy()
        for c, code in self._plain.items():
            self.table_phrase[c] = code

    def _set(self, table: np.ndarray, trad: np.ndarray, c: int, t2s: dict[str, str]) -> None:
        ch = chr(c)
        if 0xD800 <= c <= 0xDFFF:
            return
        if ch in _ALWAYS_DROP:
            table[c] = DROP_ALWAYS
            return
        form = unicodedata.normalize("NFKC", ch).lower()
        simp = "".join(t2s.get(x, x) for x in form)
        if simp != form:
            trad[c] = True
            if len(form) == 1:
                self._plain[c] = ord(form.translate(_DIGITS))
        form = simp.translate(_DIGITS)
        if len(form) == 1 and (form in _SEPARATORS or _is_symbol(form)):
            table[c] = DROP_BETWEEN_CJK
            self.kept_form[c] = form
        elif len(form) == 1:
            table[c] = ord(form)
        elif len(form) == 0:
            table[c] = DROP_ALWAYS
        else:
            table[c] = EXPAND
            self.expansions[c] = form

    def map_char(self, ch: str) -> str:
        """Normal form of one character (for rule terms), without dropping anything."""
        code = int(self.table[ord(ch)]) if ord(ch) < _TABLE_SIZE else ord(ch)
        if code == DROP_ALWAYS:
            return ""
        if code == DROP_BETWEEN_CJK:
            return self.kept_form.get(ord(ch), ch)
        if code == EXPAND:
            return self.expansions[ord(ch)]
        return chr(code)


@dataclass(slots=True)
class NormalizedText:
    """Normalised text and the map from its indices back to the original text."""

    text: str
    original: str
    # Segment starts in normalised text, their original starts, and whether a segment is one
    # original character expanded to several (every char in it maps to the same original char).
    seg_norm: list[int]
    seg_orig: list[int]
    seg_collapsed: list[bool]
    # Code points of ``text`` when the normaliser already has them (no character was dropped).
    codes: np.ndarray | None = None

    def orig_index(self, pos: int) -> int:
        """Original index of the character at normalised index ``pos``."""
        if not self.seg_norm:
            return pos
        k = bisect_right(self.seg_norm, pos) - 1
        if k < 0:
            return pos
        if self.seg_collapsed[k]:
            return self.seg_orig[k]
        return self.seg_orig[k] + (pos - self.seg_norm[k])

    def orig_span(self, start: int, end: int) -> tuple[int, int]:
        """Original ``[start, end)`` covering the normalised span ``[start, end)``."""
        if end <= start:
            o = self.orig_index(start)
            return o, o
        seg_norm = self.seg_norm
        if not seg_norm or start < 0:
            return (start, end) if not seg_norm else (self.orig_index(start), self.orig_index(end - 1) + 1)
        # orig_index of start and of end - 1, the second bisect starting from the first's segment
        k = bisect_right(seg_norm, start) - 1
        a = self.seg_orig[k] if self.seg_collapsed[k] else self.seg_orig[k] + (start - seg_norm[k])
        last = end - 1
        j = bisect_right(seg_norm, last, k) - 1
        b = self.seg_orig[j] if self.seg_collapsed[j] else self.seg_orig[j] + (last - seg_norm[j])
        return a, b + 1


class Normalizer:
    """Turns text into its normal form; one instance is shared (the table takes ~1 s to build)."""

    def __init__(self) -> None:
        self.chars = CharTable()

    def term(self, term: str) -> str:
        """Normal form of a rule term: the same per-character steps as for text."""
        return "".join(self.chars.map_char(ch) for ch in term)

    def normalize(self, text: str) -> NormalizedText:
        if not text:
            return NormalizedText("", text, [], [], [])
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        mapped = self.chars.flagged.take(codes)
        if mapped.max() >= TRADITIONAL_BIT:
            codes, whole = self._phrase_t2s(text)
            mapped = (self.chars.table_phrase if whole else self.chars.table).take(codes)
        out = mapped.tobytes().decode("utf-32-le")
        special = np.flatnonzero(mapped <= EXPAND)
        if special.size == 0:
            return NormalizedText(out, text, [], [], [], mapped)
        return self._rebuild(text, out, special.tolist())

    def _phrase_t2s(self, text: str) -> tuple[np.ndarray, bool]:
        """Phrase-level OpenCC conversion, used only where it keeps the text char-aligned.

        Returns the converted code points and whether the whole text converted aligned (then the
        per-char t2s step is skipped; otherwise it still applies to the lines left unconverted).
        """
        conv = _converter().convert(text)
        whole = len(conv) == len(text)
        if not whole:
            lines = text.split("\n")
            conv = "\n".join(c if len(c := _converter().convert(line)) == len(line) else line
                             for line in lines)
        return np.frombuffer(conv.encode("utf-32-le"), dtype=np.uint32), whole

    def _rebuild(self, text: str, out: str, special: list[int]) -> NormalizedText:
        pieces: list[str] = []
        seg_norm: list[int] = [0]
        seg_orig: list[int] = [0]
        seg_col: list[bool] = [False]
        npos = 0  # length of normalised output so far
        prev = 0  # next original index not yet copied
        n = len(out)
        i = 0
        m = len(special)
        while i < m:
            j = i
            while j + 1 < m and special[j + 1] == special[j] + 1:
                j += 1
            run_start, run_end = special[i], special[j] + 1
            if run_start > prev:
                pieces.append(out[prev:run_start])
                npos += run_start - prev
            # Judge "between Han characters" on the original text: 二 is already "2" in ``out``.
            between = (run_start > 0 and is_han(text[run_start - 1])
                       and run_end < n and is_han(text[run_end]))
            for k in range(run_start, run_end):
                code = ord(out[k])
                if code == DROP_ALWAYS or (code == DROP_BETWEEN_CJK and between):
                    continue
                if code == DROP_BETWEEN_CJK:
                    rep = self.chars.kept_form.get(ord(text[k]), text[k])
                else:
                    rep = self.chars.expansions.get(ord(text[k]), text[k])
                seg_norm.append(npos)
                seg_orig.append(k)
                seg_col.append(len(rep) > 1)
                pieces.append(rep)
                npos += len(rep)
            seg_norm.append(npos)
            seg_orig.append(run_end)
            seg_col.append(False)
            prev = run_end
            i = j + 1
        if prev < n:
            pieces.append(out[prev:])
        return NormalizedText("".join(pieces), text, seg_norm, seg_orig, seg_col)


@lru_cache(maxsize=1)
def default_normalizer() -> Normalizer:
    return Normalizer()
