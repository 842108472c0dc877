"""The anchor prefilter (detectors/prefilter.py): it answers exactly what the full scan answers, so
``detect(..., gate=False)`` gives the same results, and on ordinary pages it really says "no"."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import opencc
import pytest

from crawler.pipelines.extract import _parse, page_text
from detectors import Engine, get_engine
from detectors.engine import RULES_DIR
from detectors.gate import GATE_LEXICONS
from detectors.loader import load_rules
from detectors.prefilter import Prefilter

ROOT = Path(__file__).resolve().parent.parent
_PHONE = "，报名电话13800001111"


def _crawl_bench():
    spec = importlib.util.spec_from_file_location("crawl_bench", ROOT / "benchmarks" / "crawl_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _corpus_texts() -> list[str]:
    texts = []
    for path in sorted((ROOT / "tests" / "corpus").glob("*.jsonl")):
        texts += [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    ruleset = load_rules(RULES_DIR, required=GATE_LEXICONS)
    for rule in ruleset.rules:
        texts += list(rule.examples_match) + list(rule.examples_no_match)
    return texts


def _evaded(texts: list[str]) -> list[str]:
    """The same texts in traditional characters and spaced out character by character."""
    s2t = opencc.OpenCC("s2t")
    return [s2t.convert(t) for t in texts] + [" ".join(t) for t in texts]


@pytest.fixture(scope="module")
def engine():
    """The rules alone (rule mechanics); ``_assert_same_either_gate`` checks the shipped engine too."""
    return Engine(mode="rules")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    base = _corpus_texts()
    return base + _evaded(base)


def _full_answer(engine, norm, lids) -> bool:
    return engine.index.scan(norm).any_of(lids)


def test_prefilter_agrees_with_full_scan_on_corpus_and_examples(engine, texts):
    answers = []
    for text in texts:
        norm = engine.normalizer.normalize(text)
        fast = engine._prefilter.any_of(norm)
        assert fast == _full_answer(engine, norm, engine._anchor_ids), f"prefilter disagrees on: {text[:80]}"
        answers.append(fast)
    assert any(answers) and not all(answers), "the texts should include documents with and without anchors"


def test_prefilter_agrees_for_every_lexicon_alone(engine, texts):
    """Any lexicon set works, not only the anchors: guards, regexes and near misses included."""
    index = engine.index
    prefilters = [(lid, Prefilter(index, (lid,))) for lid in range(len(index.names))]
    sample = texts[::3]
    for text in sample:
        norm = engine.normalizer.normalize(text)
        full = index.scan(norm)
        for lid, prefilter in prefilters:
            assert prefilter.any_of(norm) == full.has(lid), f"lexicon {index.names[lid]} on: {text[:80]}"


@pytest.mark.parametrize("size", ["small", "large", "markup"])
def test_bench_pages_mostly_take_the_fast_path(engine, size):
    bench = _crawl_bench()
    said_no = 0
    pages = range(120)
    for i in pages:
        text = page_text(_parse(bench.render_page(i, 5000, *bench.SIZES[size]).decode()))
        norm = engine.normalizer.normalize(text)
        fast = engine._prefilter.any_of(norm)
        assert fast == _full_answer(engine, norm, engine._anchor_ids), f"{size} page {i}"
        if i % 10 == 3:  # the generator's pages with a violation
            assert fast, f"{size} page {i} carries a violation"
            assert engine.detect(text, gate=False).findings
        else:
            said_no += not fast
            assert engine.detect(text, gate=False).gate.register == "no_anchor"
    assert said_no >= 0.8 * len(pages)


def _assert_same_either_gate(engine, text: str) -> None:
    """A text with an anchor goes through the gate whatever ``gate`` says: same result both ways."""
    for each in (engine, get_engine()):  # the rules alone, and with the learned scorer
        loose = each.detect(text, gate=False)
        assert loose.gate.register != "no_anchor", text
        assert loose.to_dict() == each.detect(text, gate=True).to_dict()


@pytest.mark.parametrize("text", [
    "暑假初三shuxue一对一辅导，火热招生" + _PHONE,  # pinyin
    "暑假初三数 学 一 对 一辅 导，火热招生" + _PHONE,  # spaced characters
    "暑假初三數學一對一輔導，火熱招生" + _PHONE,  # traditional characters
])
def test_gate_false_finds_anchors_behind_evasions(engine, text):
    assert "数学" not in text
    _assert_same_either_gate(engine, text)
    assert any(f.rule.startswith("BA1") for f in engine.detect(text, gate=False).findings)


def test_gate_false_finds_initials_only_with_their_context(engine):
    guarded = "初三sx"
    assert engine._prefilter.any_of(engine.normalizer.normalize(guarded))
    _assert_same_either_gate(engine, guarded)
    # the same initials without a grade nearby are no anchor, for the full scan and the prefilter
    alone = "sx 价格面议"
    norm = engine.normalizer.normalize(alone)
    assert not _full_answer(engine, norm, engine._anchor_ids)
    assert engine.detect(alone, gate=False).gate.register == "no_anchor"


@pytest.mark.parametrize(("text", "lexicon", "kind"), [
    ("暑期班原价1999元，现价999元" + _PHONE, "EM5.reference-price:anchor_regex", "regex"),
    ("暑期班限时5折" + _PHONE, "EM5.flash-discount:anchor_regex", "regex"),
    ("暑期班5折抢购" + _PHONE, "EM5.flash-discount:anchor_regex", "regex"),  # runs only with 折抢购 found
    ("不要让孩子输在起跑钱上，暑假班火热招生" + _PHONE, "em_anxiety", "near miss"),
])
def test_gate_false_finds_anchors_only_a_regex_or_near_miss_gives(engine, text, lexicon, kind):
    index = engine.index
    found = index.scan(engine.normalizer.normalize(text))
    with_hits = [lid for lid in engine._anchor_ids if found.has(lid)]
    assert with_hits == [index.ids[lexicon]]
    # no term of the lexicon itself is in the text: its hit comes from a regex or a near miss
    assert index.ids[lexicon] not in found.by_lex
    hits = found.get(index.ids[lexicon])
    assert hits and all(h[2] == (4 if kind == "near miss" else 0) for h in hits)
    _assert_same_either_gate(engine, text)
    assert engine.detect(text, gate=False).findings


def test_whole_word_check_applies_to_the_prefilter(engine):
    """``top1`` is an absolute claim, ``top10`` is not: the prefilter drops what the scan drops."""
    for text, expected in (("top1", True), ("top10榜单", False)):
        norm = engine.normalizer.normalize(text)
        assert engine._prefilter.any_of(norm) is expected
        assert _full_answer(engine, norm, engine._anchor_ids) is expected
