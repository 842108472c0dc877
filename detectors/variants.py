"""Evasion variants of rule terms, generated rather than hand-listed.

* ``pinyin``: full pinyin (``shuxue``) and, for two- and three-character terms, mixed forms where
  one character is written in pinyin (``shu学``, ``数xue``);
* ``initials``: first letters (``sx``, ``xsc``); ambiguous, so lexicons using them name a context;
* ``homophones``: the term with one character replaced by a common character (GB2312 level 1)
  read the same, tones ignored (``数穴``, ``英吾``); word-level, only for rule terms, and also
  guarded by context;
* digit forms of "N对N" terms (``1v1``, ``1vs1``).

Variants are returned as (string, kind) pairs; the caller normalises them like any term.
"""

from __future__ import annotations

import re
from functools import lru_cache

from pypinyin import Style, lazy_pinyin, pinyin_dict

KINDS = ("exact", "pinyin", "initials", "homophone", "fuzzy")
_TONE_MARKS = str.maketrans("āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜüńňǹḿ", "aaaaeeeeiiiioooouuuuvvvvvnnnm")
_MAX_HOMOPHONES_PER_CHAR = 80
# Function characters never used as a homophone substitute: 不习 (不习惯) is not 补习.
_FUNCTION_CHARS = set("不的了是在有和与于为以之其这那也就都而及或把被让给向从对")


def _is_common_han(ch: str) -> bool:
    """GB2312 level-1 characters: the 3,755 most common Han characters."""
    try:
        raw = ch.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return len(raw) == 2 and 0xB0 <= raw[0] <= 0xD7


@lru_cache(maxsize=1)
def _homophone_index() -> dict[str, tuple[str, ...]]:
    """Toneless pinyin -> common characters with that reading, in code-point order."""
    index: dict[str, list[str]] = {}
    for code, readings in pinyin_dict.pinyin_dict.items():
        ch = chr(code)
        if not _is_common_han(ch):
            continue
        key = readings.split(",")[0].translate(_TONE_MARKS)  # main reading only
        index.setdefault(key, []).append(ch)
    return {k: tuple(v) for k, v in index.items()}


def _syllables(term: str) -> list[str]:
    return [p.replace("ü", "v") for p in lazy_pinyin(term, errors="default", v_to_u=False)]


def _all_han(term: str) -> bool:
    return bool(term) and all("\u4e00" <= ch <= "\u9fff" for ch in term)


def pinyin_variants(term: str) -> list[str]:
    if not _all_han(term) or len(term) < 2:
        return []
    syl = _syllables(term)
    out = ["".join(syl)]
    if len(term) <= 3:
        for i in range(len(term)):
            out.append(term[:i] + syl[i] + term[i + 1:])
    return out


def initials_variants(term: str) -> list[str]:
    if not _all_han(term) or len(term) < 2:
        return []
    return ["".join(lazy_pinyin(term, style=Style.FIRST_LETTER))]


def homophone_variants(term: str) -> list[str]:
    if not _all_han(term) or len(term) < 2:
        return []
    index = _homophone_index()
    syl = _syllables(term)
    out = []
    for i, ch in enumerate(term):
        for alt in index.get(syl[i], ())[:_MAX_HOMOPHONES_PER_CHAR]:
            if alt != ch and alt not in _FUNCTION_CHARS:
                out.append(term[:i] + alt + term[i + 1:])
    return out


_VS = re.compile(r"([0-9一二三四五六七八九])对([0-9一二三四五六七八九多])")


def digit_variants(term: str) -> list[str]:
    """``一对一`` -> ``1v1``, ``1vs1``; other digit forms come from the character table."""
    out = []
    if _VS.search(term):
        out.append(_VS.sub(r"\1v\2", term))
        out.append(_VS.sub(r"\1vs\2", term))
    return out


_GENERATORS = {
    "pinyin": pinyin_variants,
    "initials": initials_variants,
    "homophones": homophone_variants,
    "digits": digit_variants,
}
# "fuzzy" is not a generator: long phrases of such a lexicon also match with one character off
# (detectors/fuzzy.py).
VARIANT_OPTIONS = tuple(_GENERATORS) + ("fuzzy",)
_KIND_OF_OPTION = {"pinyin": "pinyin", "initials": "initials", "homophones": "homophone",
                   "digits": "exact"}


def expand(term: str, options: tuple[str, ...]) -> list[tuple[str, str]]:
    """The term itself plus its variants for the requested options, as (string, kind)."""
    out = [(term, "exact")]
    seen = {term}
    for option in options:
        if option not in _GENERATORS:
            continue
        for v in _GENERATORS[option](term):
            if v not in seen:
                seen.add(v)
                out.append((v, _KIND_OF_OPTION[option]))
    return out
