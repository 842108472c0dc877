"""``Pattern.finditer`` over long texts, trying only the positions where a match can start.

A pattern that opens with a lookbehind or a class of thousands of characters gets no fast prefix
scan from ``re``: it is tried at every position of a 10,000-character page. When every match
must start with one of a few characters, or must lie close before a short anchor string, a
prefix-optimised search for those finds the few positions worth trying, and ``Pattern.match``
at each of them in order gives exactly the matches ``finditer`` would (lookbehinds still see the
text before the position). Where the candidates are dense, ``finditer`` itself is cheaper and
is used instead: the matches are the same either way.

The start positions themselves come from ``StartChars``: one code-point lookup (numpy) finds those
of several start classes at once, where a regex scan for a character class costs a pass each.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy

from storage.width import code_points

# Above one candidate position per this many characters, a plain scan costs less than the tries.
_DENSE = 24


class StartChars:
    """Where in a text the characters of a few named sets are, found in one pass for all sets."""

    def __init__(self, sets: dict[str, str]) -> None:
        if len(sets) > 8:
            raise ValueError("StartChars holds at most 8 character sets")
        self.bits = {name: 1 << n for n, name in enumerate(sets)}
        self.table = numpy.zeros(0x110000, dtype=numpy.uint8)
        for name, chars in sets.items():
            self.table[[ord(char) for char in chars]] |= self.bits[name]

    def positions(self, text: str) -> dict[str, list[int]]:
        """For every set, the indexes of ``text`` that hold one of its characters, in order."""
        flags = self.table[code_points(text)]
        return {name: numpy.flatnonzero(flags & bit).tolist() for name, bit in self.bits.items()}


def finditer_from(pattern: re.Pattern[str], starts: re.Pattern[str], text: str,
                  positions: list[int] | None = None) -> Iterator[re.Match[str]]:
    """``pattern.finditer(text)``, given ``starts``: one character class that every match begins with.

    ``positions``, when given, are the indexes of every match of ``starts`` in ``text`` (see
    ``StartChars``), which saves the scan for them.
    """
    if positions is None:
        positions = [start.start() for start in starts.finditer(text)]
    if len(positions) * _DENSE > len(text):
        yield from pattern.finditer(text)
        return
    end = 0
    for position in positions:
        if position < end:
            continue
        match = pattern.match(text, position)
        if match is not None:
            yield match
            end = max(match.end(), position + 1)


def finditer_near(pattern: re.Pattern[str], anchors: re.Pattern[str], text: str,
                  before: int, after: int = 0) -> Iterator[re.Match[str]]:
    """``pattern.finditer(text)``, given that every match starts between ``before`` characters before
    and ``after`` characters after the start of some match of ``anchors``."""
    found = [anchor.start() for anchor in anchors.finditer(text)]
    if len(found) * (before + after + 1) * _DENSE > len(text):
        yield from pattern.finditer(text)
        return
    end = 0  # positions below this are tried already or inside the last match
    for anchor in found:
        for position in range(max(end, anchor - before), anchor + after + 1):
            if position < end:  # inside the match just found
                continue
            match = pattern.match(text, position)
            if match is not None:
                yield match
                end = max(match.end(), position + 1)
            else:
                end = position + 1
