"""One Aho-Corasick pass over normalised text, mapping every hit to the lexicons holding the term.

All terms of all lexicons (with their generated variants) live in a single automaton.  The
automaton does not read characters directly: each code point is spelled as three private-use
symbols (bits 11+, bits 6–10, bits 0–5), because pyahocorasick looks up a node's children one by
one and the root of a Chinese term set has about a thousand of them; spelled in three levels no
node has more than 64, which makes the pass several times faster.  The three levels use disjoint
symbol ranges, so every match is aligned on a character boundary.

Regexes (prices, phone numbers, scores) run once per lexicon, all of a lexicon's patterns joined.
"""

from __future__ import annotations

import re
import string
import unicodedata
from itertools import chain

import ahocorasick
import numpy as np

from .fuzzy import FuzzyPhrases
from .hits import DocHits, Hit
from .loader import Lexicon
from .normalize import NormalizedText, Normalizer
from .regexes import (analyse, find_in_windows, literal_expansion, match_at, max_width, starts_with_trigger,
                      windows)
from .variants import expand

KIND_CODES = {"exact": 0, "pinyin": 1, "initials": 2, "homophone": 3}
_LETTERS = frozenset(string.ascii_lowercase)
_DIGITS = frozenset(string.digits)
_CJK_TENS = frozenset("十百千")
_CJK_NUMERALS = frozenset("〇零一二三四五六七八九壹贰叁肆伍陆柒捌玖貳參陸")
_L1, _L2, _L3 = 0xE000, 0xE400, 0xE800  # private-use bases of the three spelling levels
_CHUNK = 1 << 20  # characters per automaton pass (bounds the memory of the spelled stream)


def encode_codes(codes: np.ndarray) -> str:
    """Spell code points as three aligned private-use symbols each (see module doc)."""
    out = np.empty(codes.size * 3, dtype=np.uint32)
    out[0::3] = (codes >> 11) + _L1
    out[1::3] = ((codes >> 6) & 31) + _L2
    out[2::3] = (codes & 63) + _L3
    return out.tobytes().decode("utf-32-le")


def encode_text(text: str) -> str:
    return encode_codes(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32))


def _edge_flags(term: str) -> int:
    """Whole-word checks a term needs: a Latin letter edge must not touch another letter, a digit
    edge another digit (so ``sx`` is not found in ``sxyz``, nor ``top1`` in ``top10``)."""
    flags = 0
    if term[0] in _LETTERS:
        flags |= 1
    elif term[0] in _DIGITS:
        flags |= 2
    if term[-1] in _LETTERS:
        flags |= 4
    elif term[-1] in _DIGITS:
        flags |= 8
    return flags


def _is_digit_at(norm: NormalizedText, pos: int) -> bool:
    """A real digit at normalised ``pos``: 高三一轮 reads 高31轮, but its 1 is not a digit that
    glues to 高3; 十 and 百 do count (十三岁 is not 3岁)."""
    ch = norm.text[pos]
    if ch in _CJK_TENS:
        return True
    if ch not in _DIGITS:
        return False
    return norm.original[norm.orig_index(pos)] not in _CJK_NUMERALS


_GLUE = (frozenset(), _LETTERS, _DIGITS | _CJK_TENS)


def _edge_chars(flags: int) -> tuple[frozenset[str], frozenset[str]]:
    """Characters that, right before / right after a hit, may make it part of a longer word."""
    return _GLUE[1 if flags & 1 else 2 if flags & 2 else 0], _GLUE[1 if flags & 4 else 2 if flags & 8 else 0]


def _whole_words(norm: NormalizedText, ends: list[int], n: int, flags: int, before: frozenset[str],
                 after: frozenset[str]) -> list[int]:
    """The end offsets (of hits of a term of length ``n``) that are whole words.  The full check
    runs only where a neighbouring character is in ``before``/``after`` (rarely: most neighbours
    are Han characters or punctuation)."""
    text = norm.text
    size = len(text)
    k = n + 1
    if not after:
        suspect = [e for e in ends if e > n and text[e - k] in before]
    elif not before:
        suspect = [e for e in ends if e < size and text[e] in after]
    else:
        suspect = [e for e in ends if e > n and text[e - k] in before or e < size and text[e] in after]
    if not suspect:
        return ends
    broken = {e for e in suspect if _breaks_word(norm, e - n, e, flags)}
    return [e for e in ends if e not in broken] if broken else ends


def _breaks_word(norm: NormalizedText, start: int, end: int, flags: int) -> bool:
    text = norm.text
    if start > 0:
        before = text[start - 1]
        if (flags & 1 and before in _LETTERS) or (flags & 2 and _is_digit_at(norm, start - 1)):
            return True
    if end < len(text):
        after = text[end]
        if (flags & 4 and after in _LETTERS) or (flags & 8 and _is_digit_at(norm, end)):
            return True
    return False


class LexiconIndex:
    """The automaton and regexes built from every lexicon of a rule set."""

    def __init__(self, lexicons: dict[str, Lexicon], normalizer: Normalizer):
        self.names = list(lexicons)
        self.ids = {name: i for i, name in enumerate(self.names)}
        parents = self._parents(lexicons)
        self.guards: dict[int, tuple[int, int]] = {
            self.ids[n]: (self.ids[lex.variant_context], lex.variant_window)
            for n, lex in lexicons.items() if lex.variant_context}
        # normalised term -> {lexicon id: (kind, lexicon whose guard applies)}
        targets: dict[str, dict[int, tuple[int, int]]] = {}
        exact: set[str] = set()
        variants: list[tuple[str, int, int]] = []
        for name, lex in lexicons.items():
            lid = self.ids[name]
            for term in lex.terms:
                for form, kind in expand(term, lex.variants):
                    norm = normalizer.term(form)
                    if not norm:
                        continue
                    if kind == "exact":
                        exact.add(norm)
                    variants.append((norm, lid, KIND_CODES[kind]))
        # Regexes: one spec per pattern; its trigger literals join the automaton under an extra id.
        self.regex_specs: list[tuple[tuple[int, ...], re.Pattern, int | None, int]] = []
        # per spec: 0, or 1 when all its matches begin with a trigger (then it is tried only at
        # trigger starts), 2 when moreover no match is longer than its window (no window needed)
        self.anchored: list[int] = []
        # per spec: the automaton id of literals one of which every match also contains, rarer
        # than its triggers (then a spec whose triggers are present runs only if these are too)
        self.confirm_ids: list[int | None] = []
        confirms: list[tuple[str, ...]] = []
        next_id = len(self.names)
        for name, lex in lexicons.items():
            targets_of = (self.ids[name],) + parents.get(self.ids[name], ())
            for written in lex.regex:
                # Patterns run on normalised text, where "，：！" are already ",:!" (NFKC).
                pattern = unicodedata.normalize("NFKC", written)
                expansion = literal_expansion(pattern)
                if expansion:  # a small finite language: plain terms of the automaton
                    for literal in expansion:
                        exact.add(literal)
                        variants.append((literal, self.ids[name], 0))
                    continue
                triggers, window = analyse(pattern)
                # Longer triggers (literal run x alternatives) for a pattern they prefix and whose
                # matches fit their window: it is then tried exactly at every place a match can
                # start, so the choice of triggers cannot change what it finds, only how often.
                longer, longer_window = analyse(pattern, products=True)
                confirm = ()
                if (longer != triggers and starts_with_trigger(pattern, longer)
                        and max_width(pattern) <= longer_window):
                    triggers, window = longer, longer_window
                elif longer != triggers:  # 折秒杀 of [0-9.]+折(?:秒杀|…): rarer than its triggers 0折…9折
                    confirm = longer
                trigger_id = None
                if triggers:
                    trigger_id = next_id
                    next_id += 1
                    for lit in triggers:
                        exact.add(lit)
                        variants.append((lit, trigger_id, 0))
                compiled = re.compile(pattern)
                anchored = starts_with_trigger(pattern, triggers)
                if anchored and max_width(pattern) <= window:
                    anchored = 2
                self.anchored.append(int(anchored))
                confirms.append(confirm)
                self.regex_specs.append((targets_of, compiled, trigger_id, window))
        # Near misses of long phrases: their halves are triggers under one more extra id.
        self.fuzzy = FuzzyPhrases()
        self.fuzzy_id = next_id
        next_id += 1
        for name, lex in lexicons.items():
            if "fuzzy" in lex.variants:
                for target in (self.ids[name],) + parents.get(self.ids[name], ()):
                    for term in lex.terms:
                        self.fuzzy.add(target, normalizer.term(term))
        for trigger in self.fuzzy.by_trigger:
            exact.add(trigger)
            variants.append((trigger, self.fuzzy_id, 0))
        # Confirming literals join like triggers, unless one is already a term: a trigger-only
        # term skips the whole-word check, which must not change for a rule term.
        known = {norm for norm, _, _ in variants}
        for literals in confirms:
            confirm_id = None
            if literals and known.isdisjoint(literals):
                confirm_id = next_id
                next_id += 1
                for lit in literals:
                    variants.append((lit, confirm_id, 0))
            self.confirm_ids.append(confirm_id)
        for norm, lid, code in variants:
            if code and norm in exact:  # a variant that is itself a real rule term is not a variant
                continue
            slot = targets.setdefault(norm, {})
            for target in (lid,) + parents.get(lid, ()):
                if target not in slot or code < slot[target][0]:
                    slot[target] = (code, lid)
        self.terms: list[str] = list(targets)
        self.lengths = [len(t) for t in self.terms]
        trigger_only = set(range(len(self.names), next_id))
        # Regex triggers ("1" of a phone number, "元" of a price) skip the whole-word check.
        self.flags = [0 if trigger_only & set(targets[t]) else _edge_flags(t) for t in self.terms]
        edge_chars = {f: _edge_chars(f) for f in set(self.flags)}
        self.edges = [edge_chars[f] for f in self.flags]
        self.kinds = [targets[t] for t in self.terms]
        self.members = [tuple(k) for k in self.kinds]
        # lexicons holding initials/homophone variants (their hits need a context check)
        self.guarded = {lid for k in self.kinds for lid, (kind, _) in k.items() if kind >= 2}
        self.guarded |= self.fuzzy.lexicons
        self.max_len = max(self.lengths, default=1)
        # regex specs feeding each lexicon id (run lazily, once per document)
        self.specs_for: dict[int, list[int]] = {}
        for k, (targets_of, _, _, _) in enumerate(self.regex_specs):
            for lid in targets_of:
                self.specs_for.setdefault(lid, []).append(k)
        # the same with each spec's trigger id (None: the spec has no triggers and always runs)
        self.spec_triggers: dict[int, list[tuple[int, int | None]]] = {
            lid: [(k, self.regex_specs[k][2]) for k in specs] for lid, specs in self.specs_for.items()}
        self.automaton = ahocorasick.Automaton()
        spelled = encode_text("".join(self.terms))  # one numpy pass for all terms, cut up below
        pos = 0
        for idx, n in enumerate(self.lengths):
            self.automaton.add_word(spelled[pos:pos + 3 * n], idx)
            pos += 3 * n
        if self.terms:
            self.automaton.make_automaton()

    def _parents(self, lexicons: dict[str, Lexicon]) -> dict[int, tuple[int, ...]]:
        """Lexicon id -> ids of the lexicons that include it (directly or not)."""
        out: dict[int, list[int]] = {}
        for name, lex in lexicons.items():
            for child in lex.include:
                out.setdefault(self.ids[child], []).append(self.ids[name])
        return {k: tuple(v) for k, v in out.items()}

    def scan(self, norm: NormalizedText | str) -> DocHits:
        """All automaton hits of one normalised text; regexes run later, only when asked for."""
        if isinstance(norm, str):
            norm = NormalizedText(norm, norm, [], [], [])
        text, codes = norm.text, norm.codes
        if not text or not self.terms:
            return DocHits(self, {}, {}, text)
        if codes is None:
            codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        if codes.size <= _CHUNK:
            return self._scan_one(norm, codes)
        groups: dict[int, list[int]] = {}
        ends, idxs = self._automaton_hits(codes)
        if ends.size:
            order = np.argsort(idxs, kind="stable")
            idxs, ends = idxs[order], ends[order]
            cuts = (np.flatnonzero(idxs[1:] != idxs[:-1]) + 1).tolist()
            bounds = [0] + cuts + [idxs.size]
            firsts = idxs[bounds[:-1]].tolist()
            ends_list = ends.tolist()
            flags, lengths, edges = self.flags, self.lengths, self.edges
            for i, idx in enumerate(firsts):
                chunk = ends_list[bounds[i]:bounds[i + 1]]
                if flags[idx]:
                    chunk = _whole_words(norm, chunk, lengths[idx], flags[idx], *edges[idx])
                    if not chunk:
                        continue
                groups[idx] = chunk
        return DocHits(self, groups, groups, text)

    def _scan_one(self, norm: NormalizedText, codes: np.ndarray) -> DocHits:
        """A document that fits one automaton pass: hits grouped per term in plain Python (for a
        page of a few KB that beats numpy's per-call overhead); end offsets stay in stream
        coordinates until a group is asked for (most groups are only counted)."""
        raw: dict[int, list[int]] = {}
        get = raw.get
        for end, idx in self.automaton.iter(encode_codes(codes)):
            ends = get(idx)
            if ends is None:
                raw[idx] = [end]
            else:
                ends.append(end)
        groups: dict[int, list[int]] = {}
        flags, lengths, edges = self.flags, self.lengths, self.edges
        for idx in [i for i in raw if flags[i]]:
            chunk = _whole_words(norm, [e // 3 + 1 for e in raw[idx]], lengths[idx], flags[idx], *edges[idx])
            if chunk:
                groups[idx] = raw[idx] = chunk
            else:
                del raw[idx]
        return DocHits(self, raw, groups, norm.text)

    def _automaton_hits(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(exclusive end offsets, term indices) of every match, in chunks to bound memory.

        Chunk k covers ``[start - overlap, stop)`` and keeps matches ending after ``start``, so a
        match across a boundary is found exactly once.
        """
        ends_parts, idx_parts = [], []
        n = codes.size
        overlap = self.max_len - 1
        for start in range(0, n, _CHUNK):
            stop = min(n, start + _CHUNK)
            lo = max(0, start - overlap)
            stream = encode_codes(codes[lo:stop])
            flat = np.fromiter(chain.from_iterable(self.automaton.iter(stream)), dtype=np.int64)
            if not flat.size:
                continue
            ends = flat[0::2] // 3 + 1 + lo
            idxs = flat[1::2]
            if lo < start:
                keep = ends > start
                ends, idxs = ends[keep], idxs[keep]
            ends_parts.append(ends)
            idx_parts.append(idxs)
        if not ends_parts:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty
        return np.concatenate(ends_parts), np.concatenate(idx_parts)

    def run_regex(self, spec_id: int, text: str, hits: DocHits) -> list[Hit]:
        """Matches of one regex spec: around its trigger hits, or over the whole text when the
        triggers are dense (many tiny windows cost more than one pass)."""
        _, pattern, trigger_id, window = self.regex_specs[spec_id]
        n = len(text)
        if trigger_id is not None:
            present = hits.by_lex.get(trigger_id)
            if not present:
                return []
            confirm_id = self.confirm_ids[spec_id]
            if confirm_id is not None and confirm_id not in hits.by_lex:
                return []
            starts = hits.starts(present)
            anchored = self.anchored[spec_id]
            if anchored:
                starts = sorted(set(starts))
                spans = windows(starts, window, n) if anchored == 1 and len(starts) * window * 2 < n else [(0, n)]
                return match_at(pattern, text, starts, spans)
            if len(starts) * window * 2 < n:
                return find_in_windows(pattern, text, windows(starts, window, n))
        return [(a, b, 0) for a, b in (m.span() for m in pattern.finditer(text)) if b > a]
