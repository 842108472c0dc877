"""The learned scorer: deterministic training, the weights file, model findings, how it combines."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from detectors.corpus import load_corpus
from detectors.engine import Engine
from detectors.learned import MODEL_ALONE_MIN, SCORER_PATH, Scorer, ScorerError, ngram_buckets
from detectors.model import CATEGORIES
from detectors.training import corpus_digest, train

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"


@pytest.fixture(scope="module")
def small_docs():
    """A small training corpus: every third document of the project's own labelled files."""
    return load_corpus(CORPUS)[::3]


@pytest.fixture(scope="module")
def small_model(tmp_path_factory, small_docs):
    path = tmp_path_factory.mktemp("model") / "scorer.npz"
    report = train(small_docs, path)
    return path, report


def test_training_is_deterministic(tmp_path, small_docs, small_model):
    path, report = small_model
    again = tmp_path / "again.npz"
    assert train(list(reversed(small_docs)), again).sha256 == report.sha256  # order of input does not matter
    assert again.read_bytes() == path.read_bytes()
    # ... and the file does depend on the corpus
    other = tmp_path / "other.npz"
    assert train(small_docs[1:], other).sha256 != report.sha256


def test_weights_file_records_its_corpus_and_libraries(small_docs, small_model):
    path, report = small_model
    meta = Scorer(path).meta
    assert meta["corpus_sha256"] == corpus_digest(small_docs)
    assert meta["n_docs"] == len(small_docs)
    assert set(meta["libraries"]) == {"numpy", "scipy", "scikit-learn"}
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_train_check_compares_bytes(tmp_path, small_model):
    """``xunjian model train --check`` says whether retraining reproduces a file (exit 0 / 1)."""
    path, _ = small_model
    corpus = tmp_path / "small.jsonl"
    docs = load_corpus(CORPUS)[::3]
    corpus.write_text("".join(json.dumps({"id": d.id, "text": d.text, "labels": list(d.labels)},
                                         ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    cli = [sys.executable, "-m", "crawler.cli", "model", "train", "--corpus", str(corpus)]
    out = tmp_path / "cli.npz"
    done = subprocess.run(cli + ["--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == path.read_bytes()
    same = subprocess.run(cli + ["--out", str(out), "--check"], capture_output=True, text=True, cwd=ROOT)
    assert same.returncode == 0 and "一致" in same.stdout, same.stdout + same.stderr
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    differs = subprocess.run(cli + ["--out", str(out), "--check"], capture_output=True, text=True, cwd=ROOT)
    assert differs.returncode == 1 and "不一致" in differs.stdout


def test_cli_refuses_the_test_split(tmp_path):
    done = subprocess.run([sys.executable, "-m", "crawler.cli", "model", "train", "--corpus",
                           str(CORPUS / "independent" / "test.jsonl"), "--out", str(tmp_path / "x.npz")],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert "测试集" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_shipped_weights_match_the_dev_corpus():
    """The shipped file was trained on the corpora as they are now (retrain after changing them)."""
    from crawler.model_cli import DEFAULT_CORPORA

    docs = [d for p in DEFAULT_CORPORA for d in load_corpus(p)]
    assert Scorer(SCORER_PATH).meta["corpus_sha256"] == corpus_digest(docs)


def test_bad_weights_file_is_one_line_error(tmp_path, small_model):
    path, _ = small_model
    with pytest.raises(ScorerError, match="找不到模型权重文件"):
        Scorer(tmp_path / "missing.npz")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ScorerError, match="无法读取"):
        Scorer(broken)
    # a file of another feature layout is refused, not misread
    wrong = tmp_path / "wrong.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(wrong, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "meta.npy":
                arr = np.lib.format.read_array(__import__("io").BytesIO(data))
                meta = json.loads(bytes(arr).decode())
                meta["feature_version"] = 999
                buf = __import__("io").BytesIO()
                np.lib.format.write_array(buf, np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
                data = buf.getvalue()
            dst.writestr(item, data)
    with pytest.raises(ScorerError, match="特征版本"):
        Scorer(wrong)


def test_ngram_hashing_folds_digits_and_is_stable():
    a, _ = ngram_buckets("初二数学13800001111")
    b, _ = ngram_buckets("初二数学13912345678")
    assert np.array_equal(a, b)  # a number's value is no feature
    c, _ = ngram_buckets("初二物理13800001111")
    assert not np.array_equal(a, c)
    assert ngram_buckets("")[0].size == 0


def test_model_only_finding_is_explained(small_model):
    """A finding from the model alone names 模型判定, its probability, the weightiest n-grams (as
    matched text with offsets into the original) and the category's legal basis."""
    path, _ = small_model
    engine = Engine(mode="model", scorer=path)
    text = "【暑期】初 二 数 学 同步提高班火热报名中，每班限8人，报名电话13800001111"
    result = engine.detect(text)
    assert "banned_ad" in result.categories
    finding = next(f for f in result.findings if f.category == "banned_ad")
    assert finding.rule == "model.banned_ad" and finding.subcategory == "model"
    assert "模型判定" in finding.explanation and f"{result.probabilities['banned_ad']:.2f}" in finding.explanation
    assert text[finding.start:finding.end] == finding.text and finding.text
    assert "校外培训" in finding.basis
    assert result.model_version == Scorer(path).version


def test_combined_mode_follows_the_decisions(small_model):
    """A decision that follows the rules only gives exactly the rules' findings; one that the rules
    cannot reach vetoes them; one that trusts the model alone adds model findings."""
    path, _ = small_model
    scorer = Scorer(path)
    rules = Engine(mode="rules")
    text = "初二数学暑期提高班火热报名中，报名电话13800001111"
    from detectors.learned import Decision

    scorer.decisions = {c: Decision(w_model=0.0, w_rule=10.0, bias=-5.0, threshold=0.5) for c in scorer.decisions}
    combined = Engine(scorer=scorer)
    assert combined.detect(text).categories == rules.detect(text).categories == ["banned_ad"]
    assert [f.rule for f in combined.detect(text).findings] == [f.rule for f in rules.detect(text).findings]
    scorer.decisions = {c: Decision(w_model=0.0, w_rule=10.0, bias=-50.0, threshold=0.5) for c in scorer.decisions}
    assert Engine(scorer=scorer).detect(text).categories == []
    scorer.decisions = {c: Decision(w_model=0.0, w_rule=0.0, bias=5.0, threshold=0.5) for c in scorer.decisions}
    # the model alone speaks only when it is confident (MODEL_ALONE_MIN), whatever the decision says
    scorer.bias = scorer.bias.copy()
    scorer.bias[CATEGORIES.index("exaggerated_marketing")] += 40.0
    scorer.bias[CATEGORIES.index("minor_training_ad")] += 40.0
    scorer.bias[CATEGORIES.index("disguised_tutoring")] -= 40.0
    everything = Engine(scorer=scorer).detect(text)
    assert everything.probabilities["disguised_tutoring"] < MODEL_ALONE_MIN
    assert set(everything.categories) == {"banned_ad", "exaggerated_marketing", "minor_training_ad"}
    assert {f.rule for f in everything.findings if f.category != "banned_ad"} == {
        "model.exaggerated_marketing", "model.minor_training_ad"}


def test_model_never_runs_without_an_anchor(small_model):
    """The crawler's prefilter stays exact: a page with no rule anchor term gets no model finding."""
    path, _ = small_model
    engine = Engine(mode="model", scorer=path)
    result = engine.detect("今天天气晴朗，适合去公园散步。", gate=False)
    assert result.probabilities is None and not result.findings


def test_model_stays_silent_where_the_gate_hears_no_seller(small_model):
    """A report quoting an ad gets no finding from the model, however sure it is (SILENT_REGISTERS);
    the same words as an advert do."""
    from detectors.learned import Decision

    path, _ = small_model
    scorer = Scorer(path)
    scorer.decisions = {c: Decision(w_model=0.0, w_rule=0.0, bias=5.0, threshold=0.5) for c in scorer.decisions}
    scorer.bias = scorer.bias.copy() + 40.0
    engine = Engine(scorer=scorer)
    report = engine.detect("记者近日调查发现，某机构宣称“初二数学保提分”，区市场监管局已立案调查并责令整改。")
    assert report.gate.register in ("report", "policy") and report.probabilities and not report.findings
    advert = engine.detect("初二数学保提分，暑期班火热报名，电话13800001111")
    assert advert.gate.register == "advert" and "exaggerated_marketing" in advert.categories


def test_rule_features_reach_the_model(small_model):
    """Which rules fired is part of the scorer's view: the dense vector marks the rule and category."""
    path, _ = small_model
    engine = Engine(scorer=path)
    text = "初二数学暑期提高班火热报名中，报名电话13800001111"
    norm = engine.normalizer.normalize(text)
    found = engine.index.scan(norm)
    counts, reported, verdict = engine._gate(norm, found, None, None)
    findings = engine._rule_findings(norm, found, reported, verdict)
    names = engine.scorer.dense_names
    with_rules = engine.features(norm, found, counts, verdict.register, findings).dense
    without = engine.features(norm, found, counts, verdict.register, []).dense
    fired = [i for i, n in enumerate(names) if with_rules[i] != without[i]]
    assert "fired:banned_ad" in {names[i] for i in fired}
    assert any(names[i].startswith("rule:BA") for i in fired)
