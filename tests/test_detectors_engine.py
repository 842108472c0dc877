"""The detection engine's behaviour: offsets through normalisation, the gate, API, layering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import detectors
from detectors import CATEGORIES, DocumentResult, Finding, get_engine
from detectors.corpus import CorpusError, load_corpus
from detectors.engine import MAX_FINDINGS_PER_RULE
from detectors.metrics import evaluate
from detectors.normalize import default_normalizer

ROOT = Path(__file__).resolve().parent.parent
AD_TAIL = "提高班报名中，电话13800001111。"


@pytest.fixture(scope="module")
def engine():
    """The rules alone: these tests are about rule mechanics (the scorer has tests/test_learned.py)."""
    return detectors.Engine(mode="rules")


def _subject_finding(result: DocumentResult, normalized: str) -> Finding:
    hits = [f for f in result.findings if f.normalized == normalized]
    assert hits, f"no finding normalised to {normalized!r}: {[f.to_dict() for f in result.findings]}"
    return hits[0]


# --- offsets through every normalisation step ------------------------------------------------

@pytest.mark.parametrize(("written", "normalized"), [
    ("数学", "数学"),
    ("數學", "数学"),                # traditional
    ("ｓｈｕｘｕｅ", "shuxue"),       # full-width pinyin
    ("数*学", "数学"),               # separators between Han characters
    ("数 学", "数学"),
    ("数\u200b学", "数学"),          # zero-width space
    ("数👍学", "数学"),              # emoji
    ("数 🔥 学", "数学"),
    ("shuxue", "shuxue"),            # pinyin
    ("shu学", "shu学"),              # mixed pinyin
])
def test_offsets_point_at_the_original_characters(engine, written, normalized):
    text = f"初二{written}{AD_TAIL}"
    result = engine.detect(text)
    finding = _subject_finding(result, normalized)
    assert finding.text == written
    assert text[finding.start:finding.end] == written
    assert finding.category == "banned_ad" and finding.subcategory == "BA1"


def test_offsets_after_expanding_and_dropped_characters(engine):
    # ㈠ expands to three characters, the zero-width chars vanish: later offsets must still be exact.
    text = "㈠\u200b\u200b初二數\u200b學，" + AD_TAIL
    result = engine.detect(text)
    finding = _subject_finding(result, "数学")
    assert text[finding.start:finding.end] == "數\u200b學"


def test_traditional_phrase_conversion_keeps_alignment():
    norm = default_normalizer().normalize("乾隆年間的數學補習班")
    assert len(norm.text) == len("乾隆年間的數學補習班")
    assert norm.text == "乾隆年间的数学补习班"
    assert norm.orig_span(5, 7) == (5, 7)


def test_normaliser_maps_each_normalised_char_back():
    text = "Ａ１对１ 数 学㈠"
    norm = default_normalizer().normalize(text)
    assert norm.text == "a1对1 数学(1)"
    assert [text[norm.orig_index(i)] for i in range(len(norm.text))] == list("Ａ１对１ 数学㈠㈠㈠")


def test_homophone_and_initials_need_context(engine):
    assert _subject_finding(engine.detect("初二树学" + AD_TAIL), "树学").text == "树学"
    assert _subject_finding(engine.detect("初二SX" + AD_TAIL), "sx").text == "SX"
    bare = engine.detect("树学提高班报名中，电话13800001111。SX会员欢迎咨询。")
    assert not [f for f in bare.findings if f.normalized in ("树学", "sx")]


def test_near_miss_of_a_long_phrase_is_found(engine):
    text = "暑假不学，就被别人家的孩纸甩开了，初二数学班报名电话13600003333。"
    hits = [f for f in engine.detect(text).findings if f.subcategory == "EM6"]
    assert [f.text for f in hits] == ["别人家的孩纸"]
    clean = "暑假有空来玩，我家孩子也在，初二数学班报名电话13600003333。"
    assert not [f for f in engine.detect(clean).findings if f.subcategory == "EM6"]


def test_latin_terms_match_whole_words_only(engine):
    result = engine.detect("初二 asx 与 sxy 提高班报名中，电话13800001111。")
    assert not [f for f in result.findings if f.normalized == "sx"]


# --- what a finding carries ------------------------------------------------------------------

def test_findings_carry_basis_explanation_and_version(engine):
    text = "暑假初二数学同步提高班，保证提高20分，原价3680元，今日特惠99元，报名电话13800001111。"
    result = engine.detect(text)
    assert result.rules_version == engine.rules_version and result.rules_version
    assert {"banned_ad", "exaggerated_marketing"} <= set(result.categories)
    assert result.categories[0] == "banned_ad"  # most severe first
    for f in result.findings:
        assert f.basis.startswith("《")
        assert f.explanation and f.text in f.explanation or "{" not in f.explanation
        assert 1 <= f.severity <= 5
        assert f.text == text[f.start:f.end]
    assert [f.start for f in result.findings] == sorted(f.start for f in result.findings)
    em1 = [f for f in result.findings if f.subcategory == "EM1"]
    assert em1 and "第二十四条" in em1[0].basis
    assert 0 < result.score <= 1
    payload = json.loads(json.dumps(result.to_dict(), ensure_ascii=False))
    assert payload["findings"][0]["rule"] == result.findings[0].rule
    assert payload["promotional"] is True


def test_severity_escalates_with_price_contact_and_holiday(engine):
    plain = engine.detect("初二数学同步班报名中，欢迎咨询。")
    full = engine.detect("暑假初二数学同步班报名中，每期980元，电话13800001111。")
    contact = engine.detect("初二数学同步班报名中，电话13800001111。")
    assert max(f.severity for f in plain.findings if f.category == "banned_ad") == 3
    assert max(f.severity for f in contact.findings if f.category == "banned_ad") == 4
    assert max(f.severity for f in full.findings if f.category == "banned_ad") == 5
    assert full.score > plain.score


def test_adult_ads_get_only_exaggerated_marketing(engine):
    result = engine.detect("考研英语全国第一品牌，不过退费，报名电话13800001111。")
    assert set(result.categories) == {"exaggerated_marketing"}
    assert {f.subcategory for f in result.findings} == {"EM1", "EM4"}


def test_kids_non_academic_ad_is_minor_training_ad(engine):
    result = engine.detect("少儿街舞暑期班，零基础可学，每周两次，报名电话13800001111。")
    assert result.categories == ["minor_training_ad"]
    assert all(f.severity <= 2 for f in result.findings)


def test_disguised_tutoring_is_also_banned_ad(engine):
    result = engine.detect("住家老师推荐：负责接送、陪写作业、每天讲一小时初中数学，包吃住，详询13200006666。")
    assert {"disguised_tutoring", "banned_ad"} <= set(result.categories)


# --- the gate --------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "记者走访发现，部分机构打出“保过”“提分30分”等口号招揽初二数学学员，区市场监管局已立案调查。",
    "市场监管局提醒：警惕“包过”“内部资料”等宣传，如遇初中数学培训机构虚假承诺，请拨打12315举报。",
    "孩子初二数学跟不上，大家有靠谱的补习推荐吗？",
    "各区要加强寒假期间日常巡查，对以幼小衔接名义开展拼音识字培训的，依法依规严肃查处。",
    "某教育公司宣传“保过班”“中考数学提分30分”，区市场监管局依法罚款3万元，责令停止发布。",
    "我校课后服务时段安排作业辅导、答疑和社团活动，学生自愿参加。",
    "诚聘初中数学教师，要求教师资格证，五险一金，简历投递至招聘邮箱，电话13800001111。",
    "午托：接送、午餐、午休、作业看护，不提供任何课程，电话13800001111。",
    # a report quoting the whole ad, phone and price included
    "近日，有家长向本报反映，某机构张贴“初二数学暑假班，保证提分20分，报名电话13800001234”的广告。"
    "记者拨打该电话，对方称每期3800元。区教育局表示已介入调查。",
    "大学生暑期支教活动招募志愿者：为山区小学孩子辅导作业，不收取任何费用，报名请扫码。",
])
def test_gate_gives_no_findings_for_non_promotional_text(engine, text):
    result = engine.detect(text)
    assert result.findings == [], [f.to_dict() for f in result.findings]
    assert result.categories == [] and result.score == 0.0


def test_gate_reports_its_verdict(engine):
    news = engine.detect("记者走访发现，暑期部分机构以“研学营”名义开设数学课，教育部门已介入调查。")
    assert news.promotional is False and news.gate.register in ("report", "content")
    ad = engine.detect("初二数学" + AD_TAIL)
    assert ad.promotional is True and "k12" in ad.gate.audience


def test_title_and_url_inform_the_gate(engine):
    text = "我校宣传“初二数学保过班”，报名电话13800001111。"
    assert engine.detect(text).findings
    gov = engine.detect(text, title="区市场监管局通报：立案查处虚假宣传", url="https://www.example.gov.cn/news/1.html")
    assert gov.findings == []


# --- edge cases ------------------------------------------------------------------------------

def test_empty_and_blank_input(engine):
    for text in ("", "   \n\t"):
        result = engine.detect(text)
        assert result.findings == [] and result.categories == [] and result.score == 0.0
        assert result.rules_version == engine.rules_version


def test_non_string_input_is_refused(engine):
    with pytest.raises(TypeError):
        engine.detect(b"bytes")


def test_huge_document(engine):
    unit = "暑假初二数学同步提高班火热报名中，每班限8人，报名电话13800001111。本市的公园和图书馆周末照常开放。"
    text = unit * (10_000_000 // len(unit.encode("utf-8")) + 1)
    result = engine.detect(text)
    assert result.findings and len(result.findings) <= MAX_FINDINGS_PER_RULE * len(engine.rules)
    last = max(result.findings, key=lambda f: f.end)
    assert text[last.start:last.end] == last.text


def test_detect_is_deterministic(engine):
    text = "暑假初二数学同步提高班，保证提高20分，原价3680元，今日特惠99元，报名电话13800001111。" * 3
    first = engine.detect(text).to_dict()
    assert all(engine.detect(text).to_dict() == first for _ in range(3))
    fresh = detectors.Engine(mode="rules").detect(text).to_dict()
    assert fresh == first


# --- API and layering ------------------------------------------------------------------------

def test_public_api_is_pinned():
    assert sorted(detectors.__all__) == sorted([
        "CATEGORIES", "CATEGORY_LABELS", "DocumentResult", "Engine", "Finding", "GateVerdict",
        "RulePackError", "get_engine"])
    assert CATEGORIES == ("banned_ad", "exaggerated_marketing", "disguised_tutoring", "minor_training_ad")
    assert get_engine() is get_engine()


def test_detectors_imports_no_crawler_storage_or_database():
    code = ("import sys, detectors; detectors.get_engine().detect('初二数学提高班报名中，电话13800001111');"
            "print('\\n'.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    modules = out.stdout.split()
    forbidden = ("scrapy", "sqlalchemy", "crawler", "storage", "spiders", "alembic", "playwright", "sqlite3")
    leaked = [m for m in modules if m.split(".")[0] in forbidden]
    assert "detectors.engine" in modules
    assert leaked == []


def test_corpus_loader_and_metrics(tmp_path: Path, engine):
    lines = [
        {"id": "a", "text": "初二数学" + AD_TAIL, "labels": ["banned_ad"], "sub": ["BA1"], "group": "positive"},
        {"id": "b", "text": "孩子初二数学跟不上，大家有推荐吗？", "labels": [], "group": "hard_negative"},
        {"id": "c", "text": "少儿街舞暑期班，报名电话13800001111。", "labels": ["banned_ad"], "group": "positive"},
    ]
    path = tmp_path / "mini.jsonl"
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    docs = load_corpus(tmp_path)
    assert [d.id for d in docs] == ["a", "b", "c"]
    ev = evaluate(engine, docs)
    assert ev["banned_ad"].tp == 1 and ev["banned_ad"].fn == 1 and ev["banned_ad"].fp == 0
    assert ev["banned_ad"].precision == 1.0 and ev["banned_ad"].recall == 0.5
    assert ev["minor_training_ad"].fp == 1
    assert ("c", "banned_ad", "fn") in ev.errors
    path.write_text('{"id": "x", "text": 3, "labels": []}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match="mini.jsonl 第 1 行"):
        load_corpus(path)


def test_trigger_prefixed_regexes_tried_at_trigger_starts_find_what_a_scan_finds(engine):
    """A regex whose every match begins with one of its triggers is only tried where a trigger
    starts; over real pages (and a text dense with near-matches) that finds exactly what scanning
    the trigger windows finds, and, for a pattern no longer than its window, what scanning the
    whole text finds."""
    from detectors.regexes import find_in_windows, windows

    index = engine.index
    anchored = [k for k, flag in enumerate(index.anchored) if flag]
    assert anchored and any(flag == 2 for flag in index.anchored)
    texts = [d.text for name in ("positives.jsonl", "evasions.jsonl")
             for d in load_corpus(ROOT / "tests" / "corpus" / name)]
    texts.append("每人每次:120元 每节 80 每课时300，微信: abc_1234 加v：xyz9876 号 qq:123456 "
                 "电话 138 0000 1111 原价¥3680 现价99 服务超过3000余家 保证提高20分 ¥12 $5")
    found_any = 0
    for text in texts:
        norm = default_normalizer().normalize(text)
        hits = index.scan(norm)
        for k in anchored:
            _, pattern, trigger_id, window = index.regex_specs[k]
            got = index.run_regex(k, norm.text, hits)
            present = hits.by_lex.get(trigger_id)
            starts = sorted(set(hits.starts(present))) if present else []
            n = len(norm.text)
            scanned = find_in_windows(pattern, norm.text, windows(starts, window, n)) if starts else []
            dense = len(starts) * window * 2 >= n  # then the whole text is scanned
            if index.anchored[k] == 2 or (dense and starts):
                whole = [(m.start(), m.end(), 0) for m in pattern.finditer(norm.text) if m.end() > m.start()]
                assert got == whole, (pattern.pattern, text[:60])
            if not dense or index.anchored[k] == 2:
                assert got == scanned, (pattern.pattern, text[:60])
            found_any += bool(got)
    assert found_any >= 5


def test_skipping_the_gate_changes_no_finding_on_the_corpus(engine):
    """The crawler calls detect(gate=False): documents no rule is anchored on skip the gate, nothing else."""
    docs = [doc for path in sorted((Path(__file__).parent / "corpus").glob("*.jsonl")) for doc in load_corpus(path)]
    skipped = 0
    for doc in docs:
        full = engine.detect(doc.text, title=doc.title, url=doc.url)
        fast = engine.detect(doc.text, title=doc.title, url=doc.url, gate=False)
        assert [f.to_dict() for f in fast.findings] == [f.to_dict() for f in full.findings], doc.id
        assert (fast.categories, fast.score) == (full.categories, full.score), doc.id
        skipped += fast.gate.register == "no_anchor"
    assert 0 < skipped < len(docs)  # the shortcut is taken, and not for everything
    plain = engine.detect("本周末社区广场有二手家具市集，欢迎街坊选购。", gate=False)
    assert plain.findings == [] and plain.gate.register == "no_anchor" and not plain.promotional


# --- shortcuts of the scan must not change what it finds -------------------------------------

def _corpus_texts() -> list[str]:
    return [d.text for d in load_corpus(ROOT / "tests" / "corpus")]


def test_whole_word_prefilter_agrees_with_the_full_check(engine):
    """Hits of terms with a Latin or digit edge are checked in full only next to a letter or digit;
    that keeps exactly the hits the full check keeps (digits spelled 三 or 十 included)."""
    from detectors.matcher import _breaks_word, _whole_words, encode_text

    index = engine.index
    texts = _corpus_texts() + ["高三一轮复习 高31轮 十三岁 3岁 top10 top1班 asx sxy sx 2手 22手 二手 三二手 a9成新 9成新"]
    dropped = kept = 0
    for text in texts:
        norm = default_normalizer().normalize(text)
        raw: dict[int, list[int]] = {}
        for end, idx in index.automaton.iter(encode_text(norm.text)):
            raw.setdefault(idx, []).append(end // 3 + 1)
        for idx, ends in raw.items():
            flags, n = index.flags[idx], index.lengths[idx]
            if not flags:
                continue
            full = [e for e in ends if not _breaks_word(norm, e - n, e, flags)]
            assert _whole_words(norm, ends, n, flags, *index.edges[idx]) == full, (index.terms[idx], text[:40])
            dropped += len(ends) - len(full)
            kept += len(full)
    assert dropped and kept  # both outcomes occur


def test_confirming_literals_skip_only_regexes_that_cannot_match(engine):
    """A regex whose triggers are common (0折…9折) but whose matches all contain a rarer literal
    (折秒杀…) runs only when that literal occurs; where it does not, the pattern matches nowhere."""
    index = engine.index
    confirmed = [k for k, cid in enumerate(index.confirm_ids) if cid is not None]
    assert confirmed
    texts = _corpus_texts() + ["限时8折秒杀，原价99元", "全场8折，欢迎选购", "没学会可以免费重学",
                               "学不会也不免费", "5.5折抢购 6折特惠 7折"]
    skipped = ran = 0
    for text in texts:
        norm = default_normalizer().normalize(text)
        hits = index.scan(norm)
        for k in confirmed:
            pattern, trigger_id = index.regex_specs[k][1], index.regex_specs[k][2]
            if trigger_id not in hits.by_lex:
                continue
            if index.confirm_ids[k] not in hits.by_lex:
                assert pattern.search(norm.text) is None, (pattern.pattern, text[:40])
                assert index.run_regex(k, norm.text, hits) == []
                skipped += 1
            else:
                ran += bool(index.run_regex(k, norm.text, hits))
    assert skipped and ran


def test_has_agrees_with_the_hits_of_every_lexicon(engine):
    """``has`` answers without building hit lists where it can; it must say what ``get`` finds."""
    index = engine.index
    for text in _corpus_texts()[::3]:
        norm = default_normalizer().normalize(text)
        asked, built = index.scan(norm), index.scan(norm)
        for lid in range(len(index.names)):
            assert asked.has(lid) == bool(built.get(lid)), (index.names[lid], text[:40])


def test_flagged_table_marks_exactly_the_traditional_characters():
    from detectors.normalize import TRADITIONAL_BIT

    chars = default_normalizer().chars
    assert np.array_equal((chars.flagged & np.uint32(TRADITIONAL_BIT)) != 0, chars.traditional)
    assert np.array_equal(chars.flagged & ~np.uint32(TRADITIONAL_BIT), chars.table)
