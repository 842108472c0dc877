"""``Pattern.finditer`` over long texts, trying only the positions where a match can start.

A pattern that opens with a lookbehind or a class of thousands of characters gets no fast prefix
scan from ``re``: it is tried at every position of a 10,000-character page. When every match
must start with one of a few characters, or must lie close before a short anchor string, a
prefix-optimised search for those finds the few positions worth trying, and ``Pattern.match``
at each of them in order gives exactly the matches ``finditer`` would (lookbehinds still see the
text before the position). Where the candidates are dense, ``finditer`` itself is cheaper and
is used instead: the matches are the same either way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# Above one candidate position per this many characters, a plain scan costs less than the tries.
_DENSE = 24


def finditer_from(pattern: re.Pattern[str], starts: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    """``pattern.finditer(text)``, given ``starts``: one character class that every match begins with."""
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
