"""Integrity of the labelled detector corpus in tests/corpus/ (independent of the detection engine).

Checks the format of every JSON Lines record, the labelling conventions (labels follow the
sub-categories), and the minimum amounts per sub-category, evasion technique and trap kind.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from pathlib import Path

import opencc
import pytest

CORPUS = Path(__file__).resolve().parent / "corpus"
FILES = {
    "positive": CORPUS / "positives.jsonl",
    "evasion": CORPUS / "evasions.jsonl",
    "hard_negative": CORPUS / "hard_negatives.jsonl",
}
KEYS = {"id", "text", "labels", "sub", "group", "evasion", "trap", "why"}
LABELS = ("banned_ad", "exaggerated_marketing", "disguised_tutoring", "minor_training_ad")
FAMILY = {"BA": "banned_ad", "EM": "exaggerated_marketing", "DT": "disguised_tutoring", "MT": "minor_training_ad"}
SUBS = (
    [f"BA{i}" for i in range(1, 5)]
    + [f"EM{i}" for i in range(1, 8)]
    + [f"DT{i}" for i in range(1, 9)]
    + ["MT"]
)
TECHNIQUES = (
    "pinyin", "initials", "homophone", "traditional", "fullwidth", "separator",
    "emoji", "digit", "split", "cover", "contact", "image",
)
TRAPS = (
    "news", "policy", "enforcement", "consumer_warning", "school_service", "non_academic_adult",
    "adult_training", "teacher_job", "books_materials", "parent_question", "care_only",
    "same_words", "whitelist", "old_page",
)
ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
CJK_RE = re.compile(r"[\u4e00-\u9fff]")


def _load(path: Path, group: str) -> list[dict]:
    docs = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            where = f"{path.name}:{lineno}"
            assert line.strip(), f"{where}: empty line"
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                pytest.fail(f"{where}: invalid JSON ({exc})")
            assert isinstance(doc, dict), f"{where}: not a JSON object"
            assert set(doc) == KEYS, f"{where}: keys {sorted(doc)} != {sorted(KEYS)}"
            assert doc["group"] == group, f"{where}: group {doc['group']!r} in the {group} file"
            doc["_where"] = where
            docs.append(doc)
    return docs


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[dict]]:
    for group, path in FILES.items():
        assert path.is_file(), f"missing corpus file {path}"
    return {group: _load(path, group) for group, path in FILES.items()}


@pytest.fixture(scope="module")
def all_docs(corpus) -> list[dict]:
    return [d for docs in corpus.values() for d in docs]


def test_field_types_and_ids(all_docs):
    for d in all_docs:
        w = d["_where"]
        assert isinstance(d["id"], str) and ID_RE.match(d["id"]), f"{w}: bad id {d['id']!r}"
        assert isinstance(d["text"], str) and CJK_RE.search(d["text"]), f"{w}: text must contain Chinese"
        assert d["text"] == d["text"].strip(), f"{w}: text has leading/trailing whitespace"
        assert isinstance(d["why"], str) and d["why"].strip(), f"{w}: empty why"
        assert re.search(r"[A-Za-z]{3,}", d["why"]) and len(d["why"]) <= 160, f"{w}: why must be short English"
        assert isinstance(d["labels"], list) and isinstance(d["sub"], list), f"{w}: labels/sub not lists"
    ids = Counter(d["id"] for d in all_docs)
    dupes = [i for i, n in ids.items() if n > 1]
    assert not dupes, f"duplicate ids: {dupes}"


def test_no_duplicate_texts(all_docs):
    seen: dict[str, str] = {}
    for d in all_docs:
        key = re.sub(r"\s+", "", d["text"])
        assert key not in seen, f"{d['_where']}: same text as {seen[key]}"
        seen[key] = d["_where"]


def test_labels_follow_subs(all_docs):
    for d in all_docs:
        w = d["_where"]
        assert len(set(d["labels"])) == len(d["labels"]), f"{w}: repeated label"
        assert len(set(d["sub"])) == len(d["sub"]), f"{w}: repeated sub"
        assert set(d["labels"]) <= set(LABELS), f"{w}: unknown label in {d['labels']}"
        assert set(d["sub"]) <= set(SUBS), f"{w}: unknown sub in {d['sub']}"
        families = {FAMILY[s[:2]] for s in d["sub"]}
        assert families == set(d["labels"]), f"{w}: labels {d['labels']} do not match subs {d['sub']}"
        # A document is either academic (banned_ad) or non-academic kids' training (MT), never both.
        assert not {"banned_ad", "minor_training_ad"} <= set(d["labels"]), f"{w}: banned_ad together with MT"


def test_group_specific_fields(corpus):
    for d in corpus["positive"]:
        w = d["_where"]
        assert d["labels"], f"{w}: positive without labels"
        assert d["evasion"] is None and d["trap"] is None, f"{w}: positive with evasion/trap"
    for d in corpus["evasion"]:
        w = d["_where"]
        assert d["labels"], f"{w}: evasion without labels"
        assert d["evasion"] in TECHNIQUES, f"{w}: unknown technique {d['evasion']!r}"
        assert d["trap"] is None, f"{w}: evasion with trap"
    for d in corpus["hard_negative"]:
        w = d["_where"]
        assert d["labels"] == [] and d["sub"] == [], f"{w}: hard negative with labels"
        assert d["trap"] in TRAPS, f"{w}: unknown trap {d['trap']!r}"
        assert d["evasion"] is None, f"{w}: hard negative with evasion"


def test_id_prefixes(corpus):
    for d in corpus["evasion"]:
        assert d["id"].startswith("ev-"), f"{d['_where']}: evasion id must start with ev-"
    for d in corpus["hard_negative"]:
        assert d["id"].startswith("neg-"), f"{d['_where']}: hard negative id must start with neg-"
    for d in corpus["positive"]:
        assert not d["id"].startswith(("ev-", "neg-")), f"{d['_where']}: positive id uses another group's prefix"


def test_amounts(corpus, all_docs):
    assert len(all_docs) >= 500
    assert len(corpus["evasion"]) >= 100
    assert len(corpus["hard_negative"]) >= 200

    per_sub = Counter(s for d in corpus["positive"] for s in d["sub"])
    short = {s: per_sub[s] for s in SUBS if s != "MT" and per_sub[s] < 8}
    assert not short, f"positive sub-categories with fewer than 8 documents: {short}"
    assert per_sub["MT"] >= 10, f"only {per_sub['MT']} minor_training_ad positives"
    mt_em4 = [d for d in corpus["positive"] if {"MT", "EM4"} <= set(d["sub"])]
    assert len(mt_em4) >= 2, "need kids' non-academic ads with absolute terms (MT + EM4)"
    adult_em = [d for d in corpus["positive"] if d["labels"] == ["exaggerated_marketing"]]
    assert len(adult_em) >= 8, "need exaggerated-marketing-only (adult) ads"

    per_tech = Counter(d["evasion"] for d in corpus["evasion"])
    short = {t: per_tech[t] for t in TECHNIQUES if per_tech[t] < 6}
    assert not short, f"evasion techniques with fewer than 6 documents: {short}"

    per_trap = Counter(d["trap"] for d in corpus["hard_negative"])
    short = {t: per_trap[t] for t in TRAPS if per_trap[t] < 10}
    assert not short, f"trap kinds with fewer than 10 hard negatives: {short}"


def _has(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


def test_evasions_really_use_their_technique(corpus):
    t2s = opencc.OpenCC("t2s")
    checks = {
        "pinyin": lambda t: _has(r"[a-z]{3,}", t),
        "initials": lambda t: _has(r"[A-Z]{2,}", t),
        "traditional": lambda t: t2s.convert(t) != t,
        "fullwidth": lambda t: _has(r"[\uff01-\uff5e]", t) and unicodedata.normalize("NFKC", t) != t,
        "separator": lambda t: _has(r"[\u4e00-\u9fff][ *./\-_\u200b][\u4e00-\u9fff]", t),
        "emoji": lambda t: _has(r"[\u2600-\u27bf\U0001f000-\U0001faff]", t),
        "digit": lambda t: _has(r"\d", t),
        "split": lambda t: _has(r"[讠娄攵衤卜艹央牜亻乍匕车甫]", t),
        "image": lambda t: "【图片文字】" in t,
        "contact": lambda t: _has(r"(?i)v信|薇信|微芯|企鹅|vx|wx|加v|扣扣|威❤|\d[o]\d|[零一二三四五六七八九]{5,}|\d{3} \d{4} \d{4}|\d[零一二三四五六七八九]", t),
    }
    for d in corpus["evasion"]:
        check = checks.get(d["evasion"])
        if check is not None:
            assert check(d["text"]), f"{d['_where']}: text does not show technique {d['evasion']!r}"
    zero_width = [d for d in corpus["evasion"] if "\u200b" in d["text"]]
    assert len(zero_width) >= 2, "separator evasions need zero-width characters"


def test_hard_negatives_share_vocabulary_with_positives(corpus):
    terms = ("数学", "英语", "语文", "物理", "化学", "补课", "补习", "托管", "保过", "包过", "研学",
             "夏令营", "幼小衔接", "一对一", "住家", "思维", "原价", "中考", "高考", "初二", "小学")
    hard = [d for d in corpus["hard_negative"] if any(t in d["text"] for t in terms)]
    assert len(hard) >= len(corpus["hard_negative"]) // 2, "most hard negatives should reuse positive vocabulary"


def test_readme_describes_format():
    readme = CORPUS / "README.md"
    assert readme.is_file(), "tests/corpus/README.md missing"
    text = readme.read_text(encoding="utf-8")
    for word in ("labels", "sub", "evasion", "trap", "hard_negative"):
        assert word in text, f"README.md does not mention {word!r}"


def test_grade_band_conventions(all_docs):
    bands = {"BA1", "BA2", "BA3"}
    for d in all_docs:
        subs = set(d["sub"])
        w = d["_where"]
        if any(s.startswith("DT") for s in subs):
            assert subs & bands, f"{w}: disguised tutoring without a grade-band BA sub"
        if "BA4" in subs:
            assert subs & bands, f"{w}: BA4 without a grade-band BA sub"
        if "DT7" in subs:
            assert "BA4" in subs, f"{w}: DT7 (online channel) without BA4"
