"""The detection engine: normalise, scan once, gate, evaluate rules, build findings."""

from __future__ import annotations

import gc
from functools import lru_cache
from pathlib import Path

from .gate import GATE_LEXICONS, Gate, quoted_spans
from .loader import Condition, Rule, RuleSet, load_rules
from .hits import DocHits, has_near, resolve_overlaps
from .learned import MODEL_ALONE_MIN, SCORER_PATH, SILENT_REGISTERS, DocFeatures, Scorer, dense_vector, model_finding, ngram_buckets
from .matcher import LexiconIndex
from .model import CATEGORIES, DocumentResult, Finding, GateVerdict
from .normalize import NormalizedText, Normalizer, default_normalizer
from .prefilter import Prefilter
from .scoring import order_categories, score

RULES_DIR = Path(__file__).parent / "rules"
MAX_FINDINGS_PER_RULE = 20
# The learned scorer reads a text of up to MODEL_WHOLE characters whole; of a longer one, the
# neighbourhoods (MODEL_WINDOW characters either side) of its anchor terms, at most MODEL_MAX
# characters: an ad buried in a long page is judged by its own words, not diluted by the page.
MODEL_WHOLE = 1500
MODEL_WINDOW = 100
MODEL_MAX = 2000  # a 10 MB page repeating one slogan still gives a readable result
QUOTE_WINDOW = 24
_OPEN_QUOTES = "“「『\"'‘《"
_CLOSE_QUOTES = "”」』\"'’》"
_CLAUSE_END = "。！？!?\n；;"


MODES = ("combined", "rules", "model")


class Engine:
    """Detects rule findings in text.  Build once (well under a second), then call ``detect``.

    ``mode``: ``"combined"`` (default) reports what the rules find, confirmed, vetoed or completed by
    the learned scorer as its weights file decides (``learned.Decision``); ``"rules"`` the rules alone; ``"model"`` the scorer
    alone (for measurement).  ``scorer``: a weights file, or None for ``detectors/scorer.npz`` (when
    that file is absent, combined mode is the rules alone)."""

    def __init__(self, rules_dir: Path | str = RULES_DIR, normalizer: Normalizer | None = None, *,
                 mode: str = "combined", scorer: Path | str | Scorer | None = None):
        if mode not in MODES:
            raise ValueError(f"未知的检测模式：{mode}（可选 {'、'.join(MODES)}）")
        self.rules_dir = Path(rules_dir)
        self.ruleset: RuleSet = load_rules(self.rules_dir, required=GATE_LEXICONS)
        self.normalizer = normalizer or default_normalizer()
        self.index = LexiconIndex(self.ruleset.lexicons, self.normalizer)
        self.gate = Gate(self.index.ids)
        self.rules_version = self.ruleset.version
        ids = self.index.ids
        self._report_ids = (ids["g_report"], ids["g_report_strong"], ids["g_policy"])
        self._compiled = [(rule, frozenset(rule.audience), self._compile(rule)) for rule in self.ruleset.rules]
        self._suppressors = [(r.id, frozenset(r.unless_category)) for r in self.ruleset.rules if r.unless_category]
        # Lexicons some rule is anchored on: a document with none of them can have no finding.
        self._anchor_ids = tuple(sorted({i for _, _, compiled in self._compiled for i in compiled[0]}))
        # Most crawled pages have no anchor: the prefilter tells them apart without the full scan.
        self._prefilter = Prefilter(self.index, self._anchor_ids)
        self.mode = mode
        self.scorer: Scorer | None = None
        if mode != "rules":
            if isinstance(scorer, Scorer):
                self.scorer = scorer
            elif scorer is not None or SCORER_PATH.exists() or mode == "model":
                self.scorer = Scorer(scorer or SCORER_PATH)
        if self.scorer is not None:
            self._lex_ids = tuple(ids.get(name, -1) for name in self.scorer.lexicon_names)
            missing = [n for n, i in zip(self.scorer.lexicon_names, self._lex_ids) if i < 0]
            if missing:
                raise ValueError(f"{self.scorer.path}：模型引用了规则包中不存在的词表 {missing[0]}；请重新训练")

    @property
    def rules(self) -> list[Rule]:
        return list(self.ruleset.rules)

    def _compile(self, rule: Rule):
        ids = self.index.ids

        def conds(cs: tuple[Condition, ...]):
            return tuple((tuple(ids[name] for name in c.lexicons), c.window) for c in cs)

        return (tuple(ids[n] for n in rule.anchor), conds(rule.near), conds(rule.doc),
                conds(rule.unless_near), conds(rule.unless_doc),
                tuple((conds(cs), sev) for cs, sev in rule.escalate))

    def detect(self, text: str, title: str | None = None, url: str | None = None, *,
               gate: bool = True) -> DocumentResult:
        """Findings for one document; ``title`` and ``url`` only inform the gate.

        With ``gate=False`` a document that no rule can fire on (no anchor term at all) skips the gate,
        and its result carries a placeholder verdict (register ``"no_anchor"``): the crawler wants the
        findings only, the ``detect`` command and the tests want the gate's view too."""
        # Detection allocates many small tuples but never a reference cycle: pausing the cyclic
        # collector meanwhile avoids full collections over the host process's (the crawler's) heap.
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            return self._detect(text, title, url, gate)
        finally:
            if paused:
                gc.enable()

    def _detect(self, text: str, title: str | None, url: str | None, gate: bool = True) -> DocumentResult:
        if not isinstance(text, str):
            raise TypeError(f"detect() 需要 str 文本，收到 {type(text).__name__}")
        if not text or text.isspace():  # (not text.strip(), without copying the text)
            return DocumentResult([], [], 0.0, self.rules_version, GateVerdict(False, (), "empty", ("空文本",)))
        norm = self.normalizer.normalize(text)
        if not gate and not self._prefilter.any_of(norm):
            return _no_anchor(self.rules_version)
        found = self.index.scan(norm)
        if not gate and not found.any_of(self._anchor_ids):  # passes: the prefilter is exact (a cheap safeguard)
            return _no_anchor(self.rules_version)
        counts, reported, verdict = self._gate(norm, found, title, url)
        # the rules run in every mode that uses them, "model" included: which rules fired is one of
        # the scorer's features (its own findings are reported only in the other modes)
        findings: list[Finding] = []
        if verdict.promotional and (self.mode != "model" or self.scorer is not None):
            findings = self._rule_findings(norm, found, reported, verdict)
        probabilities = None
        if self.scorer is not None and found.any_of(self._anchor_ids):
            feats = self.features(norm, found, counts, verdict.register, findings)
            probabilities = self.scorer.probabilities(feats)
            if verdict.register not in SILENT_REGISTERS:  # there the rules found nothing and the model stays silent
                findings = self._combine(findings, probabilities, feats, norm)
        if not findings:
            return DocumentResult([], [], 0.0, self.rules_version, verdict, probabilities, self._model_version)
        findings.sort(key=lambda f: (f.start, f.end, f.rule))
        return DocumentResult(findings, order_categories(findings), score(findings),
                              self.rules_version, verdict, probabilities, self._model_version)

    def _rule_findings(self, norm: NormalizedText, found: DocHits, reported: bool,
                       verdict: GateVerdict) -> list[Finding]:
        """What the rules find in a document the gate let through."""
        findings: list[Finding] = []
        audience = set(verdict.audience)
        resolved: dict[tuple[int, ...], list] = {}  # anchor lexicons -> their non-overlapping hits
        for rule, rule_audience, compiled in self._compiled:
            if rule_audience and rule_audience.isdisjoint(audience):
                continue
            findings.extend(self._apply(rule, compiled, found, norm, reported, resolved))
        return _suppress_categories(findings, self._suppressors)

    def _gate(self, norm: NormalizedText, found: DocHits, title: str | None, url: str | None):
        """The gate's cue counts (quoted cues of a report discounted), whether the text reports, and
        its verdict."""
        title_counts = None
        if title:
            title_counts = self.gate.counts(self.index.scan(self.normalizer.normalize(title).text))
        counts = self.gate.counts(found)
        reported = found.any_of(self._report_ids)
        if reported:
            spans = quoted_spans(norm.text)
            if spans:
                counts = self.gate.discount_quoted(found, counts, spans)
        return counts, reported, self.gate.evaluate(counts, title_counts, url, len(norm.text))

    def scan_for_model(self, text: str, title: str | None = None, url: str | None = None):
        """(normalised text, hits, gate counts, verdict, the rules' findings, has an anchor) of one
        document, for training."""
        norm = self.normalizer.normalize(text)
        found = self.index.scan(norm)
        counts, reported, verdict = self._gate(norm, found, title, url)
        findings = self._rule_findings(norm, found, reported, verdict) if verdict.promotional else []
        return norm, found, counts, verdict, findings, found.any_of(self._anchor_ids)

    @property
    def _model_version(self) -> str | None:
        return self.scorer.version if self.scorer is not None else None

    def features(self, norm: NormalizedText, found: DocHits, gate_counts: dict[str, int], register: str,
                 findings: list[Finding], lexicons: tuple[tuple[str, int], ...] | None = None,
                 rule_ids: tuple[str, ...] | None = None) -> DocFeatures:
        """The learned scorer's view of a scanned document and the rules' findings in it;
        ``lexicons`` (name, id) pairs and ``rule_ids`` default to the scorer's own (training passes
        the layout it is building)."""
        raw = found.counts
        if lexicons is None:
            lexicons = tuple(zip(self.scorer.lexicon_names, self._lex_ids))
        if rule_ids is None:
            rule_ids = self.scorer.rule_ids
        lex = [gate_counts[name] if name in gate_counts else raw.get(lid, 0) for name, lid in lexicons]
        text, offsets = norm.text, None
        if len(text) > MODEL_WHOLE:
            text, offsets = _anchor_windows(text, found.union(self._anchor_ids))
        buckets, per_n = ngram_buckets(text)
        return DocFeatures(buckets, dense_vector(lex, rule_ids, findings, register, len(text)), per_n, offsets)

    def _combine(self, findings: list[Finding], probabilities: dict[str, float], feats: DocFeatures,
                 norm: NormalizedText) -> list[Finding]:
        """Rules and model together, per category, as the weights file's decisions say."""
        fired = {f.category for f in findings}
        keep: set[str] = set()
        out: list[Finding] = []
        for category, p in probabilities.items():
            decision = self.scorer.decisions[category]
            if self.mode == "model":
                report = p >= decision.model_only
            else:
                report = (decision.combined(p, category in fired) >= decision.threshold
                          and (category in fired or p >= MODEL_ALONE_MIN))
            if not report:
                continue  # a rule finding of the category, if any, is vetoed
            if category in fired and self.mode != "model":
                keep.add(category)  # the rules' findings carry spans, sub-category and explanation
                continue
            finding = model_finding(category, p, feats, self.scorer.top_ngrams(feats, category), norm)
            if finding is not None:
                out.append(finding)
        return [f for f in findings if f.category in keep] + out

    def _apply(self, rule: Rule, compiled, found: DocHits, norm: NormalizedText, reported: bool,
               resolved: dict[tuple[int, ...], list]) -> list[Finding]:
        anchor_ids, near, doc, unless_near, unless_doc, escalate = compiled
        any_of = found.any_of
        for lids, _ in doc:
            if not any_of(lids):
                return []
        for lids, _ in unless_doc:
            if any_of(lids):
                return []
        for lids, _ in near:  # a near condition whose lexicons are absent can never hold
            if not any_of(lids):
                return []
        anchors = resolved.get(anchor_ids)
        if anchors is None:  # rules sharing anchor lexicons share their overlap resolution
            anchors = resolved[anchor_ids] = resolve_overlaps([h for i in anchor_ids for h in found.get(i)])
        if not anchors:
            return []
        severity = rule.severity
        for conds, sev in escalate:
            if all(any_of(lids) for lids, _ in conds):
                severity = max(severity, sev)
        out: list[Finding] = []
        ntext = norm.text
        near_lists = [(found.union(lids), window) for lids, window in near]
        unless_lists = [(hits, window) for hits, window in
                        ((found.union(lids), window) for lids, window in unless_near) if hits]
        check_quotes = reported and not rule.quoted
        original = norm.original
        orig_span = norm.orig_span
        explain = rule.explanation.format
        explained: dict[tuple[str, str], str] = {}
        head = (rule.category, rule.subcategory, rule.id, severity)
        tail = rule.basis
        for hit in anchors:
            start, end = hit[0], hit[1]
            first_near = None
            for hits, window in near_lists:
                got = has_near(hits, start, end, window, hit)
                if got is None:
                    break
                if first_near is None:
                    first_near = got
            else:
                if unless_lists and any(has_near(h, start, end, w, hit) is not None for h, w in unless_lists):
                    continue
                if check_quotes and _is_quoted(ntext, start, end):
                    continue
                # the finding: its span and text in the original document
                o_start, o_end = orig_span(start, end)
                matched = original[o_start:o_end]
                near_text = ""
                if first_near is not None:
                    a, b = orig_span(first_near[0], first_near[1])
                    near_text = original[a:b]
                key = (matched, near_text)
                explanation = explained.get(key)
                if explanation is None:  # a page repeating a slogan explains it once
                    explanation = explained[key] = explain(match=matched, near=near_text or matched)
                out.append(Finding(*head, o_start, o_end, matched, ntext[start:end], explanation, tail))
                if len(out) >= MAX_FINDINGS_PER_RULE:
                    break
        return out


def _anchor_windows(text: str, hits: list) -> tuple[str, list[tuple[int, int]]]:
    """The neighbourhoods of ``hits`` in ``text``, joined by newlines, and (offset in the joined
    text, offset in ``text``) for the start of each piece."""
    spans: list[list[int]] = []
    for hit in hits:
        a, b = max(0, hit[0] - MODEL_WINDOW), min(len(text), hit[1] + MODEL_WINDOW)
        if spans and a <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], b)
        else:
            spans.append([a, b])
    pieces, offsets, used = [], [], 0
    for a, b in spans:
        b = min(b, a + MODEL_MAX - used)
        if b <= a:
            break
        offsets.append((used + len(pieces), a))  # one newline between pieces
        pieces.append(text[a:b])
        used += b - a
    return "\n".join(pieces), offsets


def _no_anchor(version: str) -> DocumentResult:
    return DocumentResult([], [], 0.0, version, GateVerdict(False, (), "no_anchor", ("没有任何规则的触发词",)))


# Reported speech in a report: "某机构号称保证通过" quotes the seller as surely as quotation marks do.
_REPORTING = ("号称", "宣称", "声称", "自称", "称", "打出", "承诺", "宣传", "标榜", "鼓吹", "吹嘘", "许诺",
              "对方说", "机构说", "写着", "印着", "广告语", "宣传语", "口号")


def _is_reported_speech(text: str, start: int) -> bool:
    """Does a reporting verb open the clause the span is in (within QUOTE_WINDOW characters)?"""
    before = text[max(0, start - QUOTE_WINDOW):start]
    cut = max(before.rfind(ch) for ch in _CLAUSE_END)
    clause = before[cut + 1:]
    return any(verb in clause for verb in _REPORTING)


def _is_quoted(text: str, start: int, end: int) -> bool:
    """Is the span inside quotation marks within the same clause, or reported speech?"""
    if _is_reported_speech(text, start):
        return True
    before = text[max(0, start - QUOTE_WINDOW):start]
    after = text[end:end + QUOTE_WINDOW]
    opened = -1
    for q in _OPEN_QUOTES:
        i = before.rfind(q)
        if i > opened:
            opened = i
    if opened < 0 or any(ch in before[opened:] for ch in _CLAUSE_END):
        return False
    closes = [i for i in (after.find(q) for q in _CLOSE_QUOTES) if i >= 0]
    if not closes:
        return False
    return not any(ch in after[:min(closes)] for ch in _CLAUSE_END)


def _suppress_categories(findings: list[Finding], suppressors: list[tuple[str, frozenset[str]]]) -> list[Finding]:
    """Drop findings of rules whose ``unless_category`` (``suppressors``: rule id and those
    categories) is present in the document."""
    if not findings or not suppressors:
        return findings
    present = {f.category for f in findings}
    blocked = {rule_id for rule_id, categories in suppressors if not categories.isdisjoint(present)}
    if not blocked:
        return findings
    return [f for f in findings if f.rule not in blocked]


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    """The shared default engine over ``detectors/rules/*.yaml``."""
    return Engine()


__all__ = ["Engine", "get_engine", "CATEGORIES"]
