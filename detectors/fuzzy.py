"""Near misses of long rule phrases: one wrong, missing or extra character (an OCR slip, a typo
or a deliberate swap such as 不提分全颔退款), confirmed with RapidFuzz's Levenshtein distance.

Each phrase of at least ``MIN_LEN`` characters is split in two halves; the halves join the
Aho-Corasick automaton as triggers, and only around a trigger hit is the distance computed, so
the cost follows the number of trigger hits, not the length of the text.
"""

from __future__ import annotations

from rapidfuzz.distance import Levenshtein

MIN_LEN = 5
KIND_FUZZY = 4
_BREAKS = frozenset("。!?;\n")
_NEGATIONS = frozenset("不没无未别非莫勿")  # one of these swapped in or out flips the meaning


class FuzzyPhrases:
    """Trigger halves -> the phrases (and lexicons) they belong to."""

    def __init__(self) -> None:
        self.by_trigger: dict[str, list[tuple[int, str, int]]] = {}  # half -> [(lexicon, phrase, offset)]
        self.lexicons: set[int] = set()

    def add(self, lid: int, phrase: str) -> None:
        if len(phrase) < MIN_LEN:
            return
        half = len(phrase) // 2
        for trigger, offset in ((phrase[:half], 0), (phrase[half:], half)):
            self.by_trigger.setdefault(trigger, []).append((lid, phrase, offset))
        self.lexicons.add(lid)

    def find(self, text: str, trigger_hits: list[tuple[int, str]]) -> dict[int, list[tuple[int, int, int]]]:
        """Near-miss spans per lexicon, from ``(start, trigger)`` pairs; exact phrases are skipped
        (the automaton already has them)."""
        out: dict[int, set[tuple[int, int, int]]] = {}
        n = len(text)
        for start, trigger in trigger_hits:
            for lid, phrase, offset in self.by_trigger.get(trigger, ()):
                span = _best_span(text, n, phrase, start - offset)
                if span is not None:
                    out.setdefault(lid, set()).add((span[0], span[1], KIND_FUZZY))
        return {lid: sorted(spans) for lid, spans in out.items()}


def _best_span(text: str, n: int, phrase: str, guess: int) -> tuple[int, int] | None:
    size = len(phrase)
    for length in (size, size - 1, size + 1):
        for begin in (guess, guess - 1, guess + 1):
            end = begin + length
            if begin < 0 or end > n:
                continue
            candidate = text[begin:end]
            if candidate == phrase:
                return None  # the literal phrase: an ordinary hit, not a near miss
            if (Levenshtein.distance(phrase, candidate, score_cutoff=1) <= 1
                    and _BREAKS.isdisjoint(candidate) and _same_negations(phrase, candidate)):
                return begin, end
    return None


def _same_negations(a: str, b: str) -> bool:
    """开学就掉队 is a slogan, 开学不掉队 is not: a near miss may not add or drop a negation."""
    return sorted(ch for ch in a if ch in _NEGATIONS) == sorted(ch for ch in b if ch in _NEGATIONS)
