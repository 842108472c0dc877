"""The learned scorer beside the rules: one logistic regression per category, inference in numpy.

Features of a document (all computed from what the engine already has in hand):

- hashed character 1–4-grams of the *normalised* text (NFKC, traditional → simplified, separators and
  emoji between Han characters dropped: the evasions the normaliser undoes are undone here too),
  counted and divided by the square root of the number of n-grams;
- the engine's lexicon counts (every lexicon's term hits, log-scaled) and the gate's cue counts;
- which rules fired (one flag per rule id, one per category): the model learns when the rules are
  right, so that one probability weighs both;
- the gate's register and the document length.

The weights live in ``detectors/scorer.npz`` (written by ``xunjian model train``; training code in
``detectors/training.py`` is the only place that imports scikit-learn).  The file also records the
feature layout, the corpus it was trained on (its SHA-256), the library versions and the decision
thresholds chosen on the dev split; loading refuses a file whose layout does not match this code.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .model import CATEGORIES, Finding

SCORER_PATH = Path(__file__).parent / "scorer.npz"
# Registers in which the gate hears someone other than a seller speak (a reporter, a regulator, a
# school, a parent asking, an employer, a shop, a charity): the model never reports alone there, as
# the rules never do; a page the gate cannot place ("content": too few selling cues) stays open to it.
SILENT_REGISTERS = frozenset({"report", "policy", "school", "question", "job", "goods", "charity"})
# A finding of the model alone says 模型判定 with its probability and carries no rule's explanation:
# it is reported only when the model is clearly confident (below one half it would even say the text
# is more likely fine). 0.65 rather than 0.5 cost nothing in out-of-fold F1 on the dev split.
MODEL_ALONE_MIN = 0.65
FEATURE_VERSION = 3
BITS = 18  # hashed n-gram buckets: 2**18
NGRAM = (1, 2, 3, 4)
REGISTERS = ("advert", "content", "report", "policy", "school", "question", "job", "goods", "charity",
             "empty", "no_anchor", "unknown")

_MIX = np.uint64(0x9E3779B97F4A7C15)
_STEP = np.uint64(0x100000001B3)
_SHIFT = np.uint64(64 - BITS)
_N_SALT = tuple(np.uint64(0xA0761D6478BD642F * (n + 1) & 0xFFFFFFFFFFFFFFFF) for n in range(max(NGRAM) + 1))

# Legal basis of a model-only finding: the category's own basis (domain.md §2), as the rules cite it.
CATEGORY_BASIS = {
    "banned_ad": "《关于进一步减轻义务教育阶段学生作业负担和校外培训负担的意见》（培训广告管控）；《关于做好校外培训广告管控的通知》",
    "exaggerated_marketing": "《中华人民共和国广告法》第二十四条、第二十八条；《中华人民共和国反不正当竞争法》第九条",
    "disguised_tutoring": "《关于坚决查处变相违规开展学科类校外培训问题的通知》（教监管厅函〔2021〕8号）；《校外培训行政处罚暂行办法》第十八条",
    "minor_training_ad": "《关于做好校外培训广告管控的通知》（不区分学科类和非学科类，不得面向中小学生、幼儿发布校外培训广告）",
}
CATEGORY_NAMES = {
    "banned_ad": "学科类培训广告", "exaggerated_marketing": "夸大宣传",
    "disguised_tutoring": "隐形变异培训", "minor_training_ad": "面向未成年人的非学科类培训广告",
}
MODEL_SEVERITY = {"banned_ad": 3, "exaggerated_marketing": 3, "disguised_tutoring": 3, "minor_training_ad": 1}


class ScorerError(ValueError):
    """The weights file is missing, malformed or does not fit this code (one line, names the file)."""


def ngram_buckets(text: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """The bucket of every character 1–4-gram occurrence of ``text`` (a bucket occurring k times
    counts k times: term frequency, no sort), and per n the bucket at each start.

    ``text`` is the normalised text (digits already ASCII)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    # every digit counts as "0": a phone, a price or a grade number is a cue, its value is not (and
    # the corpora's fake numbers must not become one)
    codes[(codes >= 48) & (codes <= 57)] = 48
    per_n: list[np.ndarray] = []
    h = np.zeros(len(codes), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for n in range(1, max(NGRAM) + 1):
            if len(codes) < n:
                break
            h = h[: len(codes) - n + 1] * _STEP + codes[n - 1:]
            if n in NGRAM:
                per_n.append(((h ^ _N_SALT[n]) * _MIX) >> _SHIFT)
    if not per_n:
        return np.zeros(0, dtype=np.int64), per_n
    return np.concatenate(per_n).astype(np.int64), per_n


@dataclass(slots=True)
class DocFeatures:
    """What the scorer reads of one document."""

    buckets: np.ndarray          # the bucket of every n-gram occurrence (int64)
    dense: np.ndarray            # float32, layout ``dense_names(lexicon_names)``
    per_n: list[np.ndarray]      # bucket at each start position, per n (for explanations)
    # when the scorer read pieces of a long text: (offset in the pieces, offset in the text) per piece
    offsets: list[tuple[int, int]] | None = None

    def to_text(self, pos: int) -> int:
        """Offset in the normalised text of position ``pos`` of what the scorer read."""
        if self.offsets is None:
            return pos
        start, origin = self.offsets[0]
        for s, o in self.offsets:
            if s > pos:
                break
            start, origin = s, o
        return origin + pos - start


def dense_names(lexicon_names: list[str], rule_ids: list[str]) -> list[str]:
    return ([f"lex:{name}" for name in lexicon_names] + [f"rule:{rid}" for rid in rule_ids]
            + [f"fired:{c}" for c in CATEGORIES] + [f"reg:{r}" for r in REGISTERS] + ["len:log", "len:short"])


def dense_vector(lex_counts: list[int], rule_ids: tuple[str, ...], findings, register: str,
                 text_len: int) -> np.ndarray:
    """The dense part of a document's features; ``findings`` are the rules' (after suppression)."""
    lex = np.log1p(np.asarray(lex_counts, dtype=np.float32))
    rules = np.zeros(len(rule_ids) + len(CATEGORIES), dtype=np.float32)
    if findings:
        fired_rules = {f.rule for f in findings}
        fired_categories = {f.category for f in findings}
        for i, rid in enumerate(rule_ids):
            if rid in fired_rules:
                rules[i] = 1.0
        for j, c in enumerate(CATEGORIES):
            if c in fired_categories:
                rules[len(rule_ids) + j] = 1.0
    reg = np.zeros(len(REGISTERS), dtype=np.float32)
    reg[REGISTERS.index(register) if register in REGISTERS else REGISTERS.index("unknown")] = 1.0
    extra = np.array([math.log1p(text_len) / 10.0, 1.0 if text_len <= 60 else 0.0], dtype=np.float32)
    return np.concatenate([lex, rules, reg, extra])


@dataclass(frozen=True, slots=True)
class Decision:
    """How rules and model combine for one category (stacked and chosen on the dev split by training).

    Combined probability q = sigmoid(w_model * logit(p) + w_rule * [a rule of the category fired] + bias);
    the category is reported when q >= ``threshold``.  ``model_only`` is the threshold on p when the
    model is measured by itself (``Engine(mode="model")``)."""

    w_model: float
    w_rule: float
    bias: float
    threshold: float
    model_only: float = 0.5

    def combined(self, p: float, fired: bool) -> float:
        p = min(max(p, 1e-6), 1 - 1e-6)
        z = self.w_model * math.log(p / (1 - p)) + self.w_rule * fired + self.bias
        return 1.0 / (1.0 + math.exp(-z))


class Scorer:
    """Per-category probabilities from ``DocFeatures``."""

    def __init__(self, path: Path | str = SCORER_PATH):
        self.path = Path(path)
        try:
            with np.load(self.path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode("utf-8"))
                rows = data["rows"].astype(np.int64)
                w_ngram = data["w_ngram"].astype(np.float32)
                self.w_dense = data["w_dense"].astype(np.float32)
                self.bias = data["bias"].astype(np.float32)
        except FileNotFoundError:
            raise ScorerError(f"{self.path}：找不到模型权重文件（用 xunjian model train 生成）") from None
        except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
            raise ScorerError(f"{self.path}：模型权重文件无法读取：{exc}") from None
        if meta.get("feature_version") != FEATURE_VERSION or meta.get("bits") != BITS:
            raise ScorerError(f"{self.path}：模型特征版本与代码不符（文件 {meta.get('feature_version')}，"
                              f"代码 {FEATURE_VERSION}）；请用 xunjian model train 重新训练")
        if tuple(meta.get("categories", ())) != CATEGORIES:
            raise ScorerError(f"{self.path}：模型类别与代码不符")
        self.meta = meta
        self.version: str = meta["version"]
        self.dense_names: list[str] = meta["dense_names"]
        self.lexicon_names = [n[4:] for n in self.dense_names if n.startswith("lex:")]
        self.rule_ids = tuple(n[5:] for n in self.dense_names if n.startswith("rule:"))
        self.decisions = {c: Decision(**meta["decisions"][c]) for c in CATEGORIES}
        # A dense table over all buckets: one gather per document, no search.
        self.w_ngram = np.zeros((1 << BITS, len(CATEGORIES)), dtype=np.float32)
        self.w_ngram[rows] = w_ngram
        self._columns = [np.ascontiguousarray(self.w_ngram[:, j]) for j in range(len(CATEGORIES))]
        if self.w_dense.shape != (len(self.dense_names), len(CATEGORIES)):
            raise ScorerError(f"{self.path}：权重维度与特征列表不符")

    def logits(self, feats: DocFeatures) -> np.ndarray:
        k = len(feats.buckets)
        z = self.bias + feats.dense @ self.w_dense
        if k:
            # one contiguous column per category: four flat gathers are several times faster than
            # one two-dimensional gather followed by a sum over its rows
            scale = 1.0 / math.sqrt(k)
            z = z + np.array([col.take(feats.buckets).sum() for col in self._columns], dtype=np.float32) * scale
        return z

    def probabilities(self, feats: DocFeatures) -> dict[str, float]:
        z = self.logits(feats)
        p = 1.0 / (1.0 + np.exp(-z))
        return {c: float(p[i]) for i, c in enumerate(CATEGORIES)}

    def top_ngrams(self, feats: DocFeatures, category: str, limit: int = 3) -> list[tuple[int, int, float]]:
        """The ``limit`` strongest non-overlapping n-grams (n ≥ 2) for ``category``: (start, end,
        weight) in the normalised text, strongest first; single characters explain nothing."""
        col = CATEGORIES.index(category)
        candidates: list[tuple[float, int, int]] = []
        for n_index, n in enumerate(NGRAM):
            if n < 2 or n_index >= len(feats.per_n):
                continue
            w = self.w_ngram[feats.per_n[n_index].astype(np.int64), col]
            for pos in np.argsort(-w, kind="stable")[: limit * 8].tolist():
                if w[pos] > 0:
                    candidates.append((float(w[pos]), pos, pos + n))
        candidates.sort(key=lambda t: (-t[0], t[1], -t[2]))
        chosen: list[tuple[int, int, float]] = []
        for weight, a, b in candidates:
            if any(a < cb and ca < b for ca, cb, _ in chosen):
                continue
            chosen.append((a, b, weight))
            if len(chosen) == limit:
                break
        return chosen


def model_finding(category: str, probability: float, feats: DocFeatures, spans: list[tuple[int, int, float]],
                  norm) -> Finding | None:
    """A finding reported by the model alone: its strongest n-grams as matched text and offsets."""
    if not spans:
        return None
    spans = [(feats.to_text(a), feats.to_text(a) + b - a, w) for a, b, w in spans]
    start, end, _ = spans[0]
    o_start, o_end = norm.orig_span(start, end)
    pieces = []
    for a, b, _ in spans:
        piece = norm.text[a:b]
        if piece not in pieces:
            pieces.append(piece)
    matched = norm.original[o_start:o_end]
    explanation = (f"模型判定：{CATEGORY_NAMES[category]}（概率 {probability:.2f}）。规则未命中，"
                   f"由统计模型根据全文判断；权重最高的片段：{'、'.join('「' + p + '」' for p in pieces)}。请人工复核。")
    return Finding(category, "model", f"model.{category}", MODEL_SEVERITY[category], o_start, o_end,
                   matched, "、".join(pieces), explanation, CATEGORY_BASIS[category])


def write_scorer(path: Path | str, *, meta: dict, rows: np.ndarray, w_ngram: np.ndarray,
                 w_dense: np.ndarray, bias: np.ndarray) -> str:
    """Write the weights file byte-for-byte reproducibly (fixed zip timestamps); returns its SHA-256."""
    import hashlib

    arrays = {
        "meta": np.frombuffer(json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8"), dtype=np.uint8),
        "rows": rows.astype(np.uint32),
        "w_ngram": w_ngram.astype(np.float16),
        "w_dense": w_dense.astype(np.float32),
        "bias": bias.astype(np.float32),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue(), compresslevel=9)
    data = buf.getvalue()
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()
