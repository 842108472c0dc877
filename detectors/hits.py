"""Hits of one document, per lexicon, materialised lazily; overlap resolution; window search.

A hit is ``(start, end, kind)`` in normalised-text coordinates; ``kind`` 0 = literal term (or
regex match), 1 = pinyin, 2 = initials, 3 = homophone (2 and 3 only count with context nearby),
4 = near miss of a long phrase (see ``fuzzy.py``).
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import chain
from operator import itemgetter

Hit = tuple  # (start, end, kind)
GUARDED_KINDS = (2, 3)
_START = itemgetter(0)
_END = itemgetter(1)
_KIND = itemgetter(2)


def resolve_overlaps(spans: list[Hit]) -> list[Hit]:
    """Keep non-overlapping spans.

    A generated variant (pinyin, initials, homophone) never beats a literal term it overlaps; among
    the rest the leftmost wins, and among equal starts the longest.
    """
    # ordered by (start, -end, kind): three stable sorts on C-level keys, minor key first
    ordered = sorted(spans, key=_KIND)
    ordered.sort(key=_END, reverse=True)
    ordered.sort(key=_START)
    exact = [h for h in ordered if h[2] == 0]
    if exact and len(exact) != len(ordered):
        starts = [h[0] for h in exact]
        ordered = [h for h in ordered if h[2] == 0 or not _overlaps_any(exact, starts, h)]
    kept: list[Hit] = []
    last_end = -1
    for span in ordered:
        if span[0] >= last_end:
            kept.append(span)
            last_end = span[1]
    return kept


def _overlaps_any(sorted_hits: list[Hit], starts: list[int], span: Hit) -> bool:
    i = bisect_left(starts, span[1])  # literal hits starting before the span ends
    return any(h[1] > span[0] for h in sorted_hits[max(0, i - 8):i])


def has_near(hits: list[Hit], start: int, end: int, window: int, exclude: Hit | None = None) -> Hit | None:
    """First hit starting within ``window`` chars before ``start`` up to ``window`` after ``end``."""
    i = bisect_left(hits, start - window, key=_START)
    limit = end + window
    n = len(hits)
    while i < n:
        h = hits[i]
        if h[0] > limit:
            return None
        if exclude is None or h[0] != exclude[0] or h[1] != exclude[1]:
            return h
        i += 1
    return None


class DocHits:
    """Per-lexicon hits of one document, built on first request and cached.

    ``raw`` maps each term index found to its (already word-boundary-checked) occurrences, as
    end offsets either in text coordinates (when also in ``groups``) or in the automaton's
    three-symbols-per-character stream; ``ends`` converts a term's list on first use.  The index
    tells which lexicons hold each term, with which kind and guard.
    """

    __slots__ = ("index", "raw", "groups", "by_lex", "counts", "regex_hits", "text", "_done", "_lex_done",
                 "_cache", "_plain", "_fuzzy", "_unions")

    def __init__(self, index, raw: dict[int, list[int]], groups: dict[int, list[int]], text: str):
        self.index = index
        self.raw = raw
        self.groups = groups
        self.text = text
        self.regex_hits: dict[int, list[Hit]] = {}
        self._done: set[int] = set()  # regex specs already run
        self._fuzzy: dict[int, list[Hit]] | None = None  # near misses per lexicon, once computed
        self.by_lex, self.counts = _lexicon_members(index, raw)
        self._lex_done: set[int] = set()  # lexicons whose regexes have run
        self._cache: dict[int, list[Hit]] = {}
        self._plain: dict[int, list[Hit]] = {}
        self._unions: dict[tuple[int, ...], list[Hit]] = {}

    def ends(self, idx: int) -> list[int]:
        """End offsets (in normalised text) of term ``idx``'s occurrences."""
        ends = self.groups.get(idx)
        if ends is None:
            ends = self.groups[idx] = [e // 3 + 1 for e in self.raw[idx]]
        return ends

    def starts(self, terms: list[int]) -> list[int]:
        """Start offsets of every occurrence of ``terms`` (no per-term list is kept)."""
        lengths, groups, raw = self.index.lengths, self.groups, self.raw
        out: list[int] = []
        for idx in terms:
            ends = groups.get(idx)
            if ends is None:  # stream coordinates: end e is character e // 3, so start e // 3 + 1 - n
                shift = 1 - lengths[idx]
                out.extend([e // 3 + shift for e in raw[idx]])
            else:
                shift = lengths[idx]
                out.extend([e - shift for e in ends])
        return out

    def has(self, lid: int) -> bool:
        hits = self._cache.get(lid)
        if hits is not None:
            return bool(hits)
        index = self.index
        terms = self.by_lex.get(lid)
        if terms is None:  # no term found: only its regexes or near misses can give it a hit
            self._regexes(lid)
            if self.regex_hits.get(lid):
                return True
            return lid in index.fuzzy.lexicons and bool(self._near_misses().get(lid))
        if lid not in index.guarded:
            return True
        kinds = index.kinds
        if any(kinds[idx][lid][0] not in GUARDED_KINDS for idx in terms):
            return True  # a literal hit: no need to check the guarded ones
        return bool(self.get(lid))

    def any_of(self, lids: tuple[int, ...]) -> bool:
        """Has any of ``lids`` a hit?"""
        for lid in lids:
            if self.has(lid):
                return True
        return False

    def _regexes(self, lid: int) -> None:
        """Run (once) the regexes feeding ``lid``; their hits go to every lexicon they feed."""
        index = self.index
        specs = index.spec_triggers.get(lid)
        if specs is None or lid in self._lex_done:
            return
        self._lex_done.add(lid)
        done, by_lex = self._done, self.by_lex
        for spec_id, trigger_id in specs:
            if trigger_id is not None and trigger_id not in by_lex:
                continue  # none of its triggers in the text: it cannot match
            if spec_id in done:
                continue
            done.add(spec_id)
            spans = index.run_regex(spec_id, self.text, self)
            if spans:
                for target in index.regex_specs[spec_id][0]:
                    self.regex_hits.setdefault(target, []).extend(spans)
                    self._cache.pop(target, None)
                    self._plain.pop(target, None)

    def _near_misses(self) -> dict[int, list[Hit]]:
        if self._fuzzy is None:
            index = self.index
            trigger_hits = [(e - index.lengths[idx], index.terms[idx])
                            for idx in self.by_lex.get(index.fuzzy_id, ()) for e in self.ends(idx)]
            self._fuzzy = index.fuzzy.find(self.text, trigger_hits) if trigger_hits else {}
        return self._fuzzy

    def count(self, lid: int) -> int:
        index = self.index
        if lid in self._cache or lid in index.fuzzy.lexicons:
            return len(self.get(lid))
        if lid in index.guarded:
            kinds = index.kinds
            if any(kinds[idx][lid][0] in GUARDED_KINDS for idx in self.by_lex.get(lid, ())):
                return len(self.get(lid))  # some hits need their context checked
        self._regexes(lid)
        return self.counts.get(lid, 0) + len(self.regex_hits.get(lid, ()))

    def get(self, lid: int) -> list[Hit]:
        hits = self._cache.get(lid)
        if hits is None:
            hits = self._cache[lid] = self._build(lid, guarded=True)
        return hits

    def union(self, lids: tuple[int, ...]) -> list[Hit]:
        """Hits of any of ``lids``, sorted (cached: rules share their conditions)."""
        if len(lids) == 1:
            return self.get(lids[0])
        hits = self._unions.get(lids)
        if hits is None:
            parts = [self.get(lid) for lid in lids]
            hits = self._unions[lids] = sorted(chain.from_iterable(parts)) if len(parts) > 1 else parts[0]
        return hits

    def plain(self, lid: int) -> list[Hit]:
        """Hits of literal and pinyin forms only (used as context for guards; never recursive)."""
        hits = self._plain.get(lid)
        if hits is None:
            hits = self._plain[lid] = self._build(lid, guarded=False)
        return hits

    def _build(self, lid: int, guarded: bool) -> list[Hit]:
        index = self.index
        if lid not in self.by_lex and lid not in index.specs_for and lid not in index.fuzzy.lexicons:
            return []  # nothing can feed it
        self._regexes(lid)
        out: list[Hit] = []
        pending: list[tuple[Hit, int]] = []
        lengths, kinds, groups, raw = index.lengths, index.kinds, self.groups, self.raw
        for idx in self.by_lex.get(lid, ()):
            kind, guard = kinds[idx][lid]
            if kind in GUARDED_KINDS and not guarded:
                continue
            length = lengths[idx]
            ends = groups.get(idx)
            if ends is None:  # stream offsets, not needed again: convert without keeping them
                shift = 1 - length
                spans = [(s, s + length, kind) for s in [e // 3 + shift for e in raw[idx]]]
            else:
                spans = [(e - length, e, kind) for e in ends]
            if kind in GUARDED_KINDS:
                pending.extend([(h, guard) for h in spans])
            else:
                out.extend(spans)
        out.extend(self.regex_hits.get(lid, ()))
        if guarded and lid in index.fuzzy.lexicons:
            out.extend(self._near_misses().get(lid, ()))
        if pending:
            guards, plain = index.guards, self.plain
            for hit, guard in pending:
                ctx, window = guards[guard]
                if has_near(plain(ctx), hit[0], hit[1], window, exclude=hit) is not None:
                    out.append(hit)
        out.sort()
        return out


def _lexicon_members(index, groups: dict[int, list[int]]) -> tuple[dict[int, list[int]], dict[int, int]]:
    """For the terms found, which of them each lexicon holds and how many hits it gets.

    A term belongs to several lexicons (its own, the lexicons including it, regex triggers).  Each
    lexicon lists its terms in order of first occurrence; every reader of these lists is
    indifferent to their order (hits are sorted where order matters).
    """
    by_lex: dict[int, list[int]] = {}
    counts: dict[int, int] = {}
    members = index.members
    for idx, ends in groups.items():
        n = len(ends)
        for lid in members[idx]:
            if lid in counts:
                by_lex[lid].append(idx)
                counts[lid] += n
            else:
                by_lex[lid] = [idx]
                counts[lid] = n
    return by_lex, counts
