"""Does a document hold any hit of a given set of lexicons?  Decided without the full automaton pass.

Most crawled pages carry no anchor term of any rule, and for them the engine only needs that
"no".  ``DocHits.has`` decides it from the hits of a few kinds of terms only: the terms of the
lexicons asked about, the trigger and confirming literals of the regexes feeding them, the
near-miss triggers of their long phrases, and the terms (and regex literals) of the context
lexicons guarding their initials and homophones.  This module finds exactly those terms, all of
their occurrences, and hands them to an ordinary ``DocHits``: whole-word checks, guards, regexes
and near misses then run unchanged, so its answer is the full scan's answer.

Finding them is cheap because every occurrence of a term of two or more characters holds one
chosen pair of its characters (its rarest-looking) at a fixed offset: numpy hashes every adjacent
pair of the text into a table of the chosen pairs, and only the positions that pass (true pairs
and a few hash collisions) are looked at in Python, one dict lookup per pair and per (offset,
length) of the terms it stands for.  One-character terms are looked up per character.  Texts
over a million characters are left to the full scan (the arrays here grow with the text).
"""

from __future__ import annotations

import numpy as np

from .hits import DocHits
from .matcher import LexiconIndex, _whole_words
from .normalize import is_han

_MASK = (1 << 18) - 1  # a table of 2**18 bytes: about one pair of the text in a hundred passes by chance
_MUL = np.uint32(0x9E3779B1)  # odd: the low bits of the product depend on all low bits of the first character
_MAX_CHARS = 1 << 20  # longer texts skip the prefilter (its arrays grow with the text)


def _hash(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return ((first * _MUL) ^ second) & _MASK


def needed_terms(index: LexiconIndex, lids: tuple[int, ...]) -> list[int]:
    """Indices of the automaton terms whose hits can decide whether any of ``lids`` has a hit."""
    wanted = set(lids)
    contexts = set()
    for kinds in index.kinds:  # lexicons whose plain hits guard the variants of ``lids``
        for lid, (kind, guard) in kinds.items():
            if kind >= 2 and lid in wanted and guard in index.guards:
                contexts.add(index.guards[guard][0])
    ids = wanted | contexts
    for lid in wanted | contexts:
        for spec in index.specs_for.get(lid, ()):
            for extra in (index.regex_specs[spec][2], index.confirm_ids[spec]):
                if extra is not None:
                    ids.add(extra)
    near_miss_triggers = {trigger for trigger, entries in index.fuzzy.by_trigger.items()
                          if any(lid in wanted for lid, _, _ in entries)}
    return [idx for idx, members in enumerate(index.members)
            if not ids.isdisjoint(members) or (index.fuzzy_id in members and index.terms[idx] in near_miss_triggers)]


def _pair_counts(terms: list[str]) -> dict[str, int]:
    """How many terms contain each pair of adjacent characters: pairs that many rule terms share
    (免费, 数学) are common words, likely in any text."""
    counts: dict[str, int] = {}
    for term in terms:
        for pair in {term[i:i + 2] for i in range(len(term) - 1)}:
            counts[pair] = counts.get(pair, 0) + 1
    return counts


def _key_offset(term: str, commonness: dict[str, int]) -> int:
    """Where the pair that stands for ``term`` begins: the rarest-looking one, Han characters
    first (digits and Latin letters make up phone numbers, prices and URLs)."""
    if len(term) == 2:
        return 0
    han = [is_han(ch) for ch in term]
    return min(range(len(term) - 1),
               key=lambda i: (2 - han[i] - han[i + 1], commonness.get(term[i:i + 2], 0), i))


class Prefilter:
    """Answers ``DocHits.any_of(lids)`` for a normalised text, finding only the terms it depends on."""

    def __init__(self, index: LexiconIndex, lids: tuple[int, ...]):
        self.index = index
        self.lids = tuple(lids)
        self.terms = needed_terms(index, self.lids)
        # per lexicon asked about: the ids (its own, its regexes' triggers, the near-miss triggers)
        # one of which must have been found for it to have a hit; None when a regex without
        # triggers feeds it (such a regex runs whatever the text holds)
        self._feeders: list[tuple[int, frozenset[int] | None]] = []
        for lid in self.lids:
            feeders = {lid}
            for _, trigger in index.spec_triggers.get(lid, ()):
                feeders.add(trigger)
            if lid in index.fuzzy.lexicons:
                feeders.add(index.fuzzy_id)
            self._feeders.append((lid, None if None in feeders else frozenset(feeders)))
        self._always = any(feeders is None for _, feeders in self._feeders)
        # key pair -> [(its offset in the terms, their length, {term: index})]: a
        # position costs one dict lookup per (offset, length), however many terms share the pair
        buckets: dict[str, dict[tuple[int, int], dict[str, int]]] = {}
        self._singles: list[tuple[int, int]] = []  # (code point, term index) of one-character terms
        commonness = _pair_counts(index.terms)
        for idx in self.terms:
            term = index.terms[idx]
            if len(term) == 1:
                self._singles.append((ord(term), idx))
                continue
            k = _key_offset(term, commonness)
            key = term[k:k + 2]
            buckets.setdefault(key, {}).setdefault((k, len(term)), {})[term] = idx
        self._by_pair = {key: [(k, n, named) for (k, n), named in sorted(by_shape.items())]
                         for key, by_shape in buckets.items()}
        firsts = np.array([ord(pair[0]) for pair in self._by_pair], dtype=np.uint32)
        seconds = np.array([ord(pair[1]) for pair in self._by_pair], dtype=np.uint32)
        self._table = np.zeros(_MASK + 1, dtype=bool)
        self._table[_hash(firsts, seconds)] = True

    def any_of(self, norm) -> bool:
        """Has any of the lexicons a hit in ``norm`` (a ``NormalizedText``)?  Exactly what the full
        scan's ``DocHits.any_of`` says."""
        text = norm.text
        if len(text) > _MAX_CHARS:  # rare: let the caller run the full scan
            return True
        codes = norm.codes
        if codes is None:
            codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        found = self._groups(norm, codes)
        if not found and not self._always:
            return False
        hits = DocHits(self.index, found, found, text)
        present = hits.by_lex
        # A lexicon none of whose feeders was found has no hit (``DocHits.has`` would say so, slower).
        return hits.any_of(tuple(lid for lid, feeders in self._feeders
                                 if feeders is None or not feeders.isdisjoint(present)))

    def _groups(self, norm, codes: np.ndarray) -> dict[int, list[int]]:
        """Every occurrence of the needed terms, as end offsets per term (ascending), whole words only."""
        found: dict[int, list[int]] = {}
        if codes.size >= 2:
            first, second = codes[:-1], codes[1:]
            passed = np.flatnonzero(self._table.take(_hash(first, second)))
            text = norm.text
            by_pair = self._by_pair
            at_pair: dict[str, list[int]] = {}  # true key pairs (not hash collisions) -> positions
            for p in passed.tolist():
                pair = text[p:p + 2]
                at = at_pair.get(pair)
                if at is not None:
                    at.append(p)
                elif pair in by_pair:
                    at_pair[pair] = [p]
            for pair, at in at_pair.items():
                for offset, n, named in by_pair[pair]:
                    if n == 2:
                        (idx,) = named.values()
                        found[idx] = [p + 2 for p in at]
                        continue
                    get = named.get
                    for p in at:
                        start = p - offset
                        if start < 0:
                            continue
                        idx = get(text[start:start + n])
                        if idx is not None:
                            ends = found.get(idx)
                            if ends is None:
                                found[idx] = [start + n]
                            else:
                                ends.append(start + n)
        for code, idx in self._singles:
            ends = (np.flatnonzero(codes == code) + 1).tolist()
            if ends:
                found[idx] = ends
        index = self.index
        flags, lengths, edges = index.flags, index.lengths, index.edges
        for idx in [i for i in found if flags[i]]:
            ends = _whole_words(norm, found[idx], lengths[idx], flags[idx], *edges[idx])
            if ends:
                found[idx] = ends
            else:
                del found[idx]
        return found
