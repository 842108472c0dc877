"""Training the learned scorer (``xunjian model train``): the only module that imports scikit-learn.

Deterministic: documents are sorted by id, folds are fixed by a hash of the id, liblinear runs with a
fixed seed, and the weights file is written with fixed zip timestamps, so the same corpus on the same
library versions gives the same file, byte for byte.

Decisions (how rules and model combine) are chosen on out-of-fold probabilities of the training
documents: per category, the pair of thresholds that maximises F1, among those that flag no more of
the corpus's clean documents than the rules alone do.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .corpus import CorpusDoc
from .engine import Engine
from .learned import BITS, FEATURE_VERSION, MODEL_ALONE_MIN, NGRAM, SCORER_PATH, SILENT_REGISTERS, dense_names, write_scorer
from .model import CATEGORIES

FOLDS = 5
DEFAULT_C = 16.0  # chosen by out-of-fold F1 on the dev split (1, 4, 16, 64 tried)
MIN_CHOOSE = 200  # independent documents needed to choose the decisions on them alone
MIN_DF = 2  # an n-gram seen in one training document only gets no weight (and no row in the file)
_GRID = tuple(round(x, 2) for x in np.arange(0.05, 1.0, 0.025))


@dataclass(slots=True)
class TrainReport:
    path: Path
    sha256: str
    version: str
    n_docs: int
    rows: int
    decisions: dict[str, dict[str, float]]
    oof: dict[str, dict[str, float]]  # per category: F1 of rules, model and combined on out-of-fold data


def corpus_digest(docs: list[CorpusDoc]) -> str:
    h = hashlib.sha256()
    for doc in sorted(docs, key=lambda d: d.id):
        h.update(json.dumps([doc.id, doc.text, list(doc.labels), doc.title, doc.url], ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


def _fold(doc_id: str) -> int:
    return int(hashlib.sha256(doc_id.encode()).hexdigest()[:8], 16) % FOLDS


def _matrix(engine: Engine, docs: list[CorpusDoc], lexicons: tuple[tuple[str, int], ...],
            rule_ids: tuple[str, ...]):
    """The n-gram matrix, the dense features, which documents have an anchor term and which
    categories the rules report for each document."""
    from scipy import sparse

    rows, cols, vals, dense, has_anchor, fired, silent = [], [], [], [], [], [], []
    for i, doc in enumerate(docs):
        norm, found, counts, verdict, findings, anchor = engine.scan_for_model(doc.text, doc.title, doc.url)
        feats = engine.features(norm, found, counts, verdict.register, findings, lexicons, rule_ids)
        categories = {f.category for f in findings}
        fired.append([c in categories for c in CATEGORIES])
        silent.append(verdict.register in SILENT_REGISTERS)
        k = len(feats.buckets)
        rows.append(np.full(k, i, dtype=np.int64))
        cols.append(feats.buckets)
        vals.append(np.full(k, 1.0 / np.sqrt(k) if k else 0.0, dtype=np.float64))
        dense.append(feats.dense)
        has_anchor.append(anchor)
    grams = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                              shape=(len(docs), 1 << BITS))
    return (grams, np.vstack(dense).astype(np.float64), np.array(has_anchor), np.array(fired, dtype=bool),
            np.array(silent, dtype=bool))


def _fit(X, y: np.ndarray, C: float):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, solver="liblinear", random_state=0, max_iter=1000, class_weight="balanced")
    model.fit(X, y)
    return model


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _choose(y: np.ndarray, p: np.ndarray, rule: np.ndarray, clean: np.ndarray) -> tuple[dict, dict]:
    """The decision for one category from out-of-fold probabilities ``p`` and the rules' verdicts
    ``rule``.  Two candidates: the model's probability itself (it already sees which rules fired)
    and a two-feature logistic regression stacking it with the rules' verdict; for each, the
    threshold that maximises F1 among those flagging no more clean documents than the rules alone;
    the better candidate wins (the stack on a tie)."""
    from sklearn.linear_model import LogisticRegression

    def counts(pred):
        return int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())

    alone_ok = rule | (p >= MODEL_ALONE_MIN)  # as the engine: no finding of the model alone below one half

    def best_threshold(q: np.ndarray) -> tuple[float, float]:
        best = (-1.0, 1.01)
        for t in _GRID:
            pred = (q >= t) & alone_ok
            if int((pred & clean).sum()) > rules_fp_clean:
                continue
            f1 = _f1(*counts(pred))
            if f1 > best[0]:
                best = (f1, t)
        return best

    rules_fp_clean = int((rule & clean).sum())
    X = np.column_stack([_logit(p), rule.astype(float)])
    candidates = []
    if y.any() and not y.all():
        stack = LogisticRegression(C=1.0, solver="liblinear", random_state=0).fit(X, y)
        w_model, w_rule = (float(v) for v in stack.coef_[0])
        bias = float(stack.intercept_[0])
        q = 1.0 / (1.0 + np.exp(-(X @ np.array([w_model, w_rule]) + bias)))
        candidates.append((*best_threshold(q), 1, (w_model, w_rule, bias)))
    candidates.append((*best_threshold(p), 0, (1.0, 0.0, 0.0)))
    f1, threshold, _, (w_model, w_rule, bias) = max(candidates, key=lambda c: (c[0], c[2]))
    model_best = max(((_f1(*counts(p >= t)), -abs(t - 0.5), t) for t in _GRID))
    return ({"w_model": round(w_model, 6), "w_rule": round(w_rule, 6), "bias": round(bias, 6),
             "threshold": float(threshold), "model_only": float(model_best[2])},
            {"rules": round(_f1(*counts(rule)), 4), "model": round(model_best[0], 4),
             "combined": round(max(f1, 0.0), 4)})


def train(docs: list[CorpusDoc], out: Path | str = SCORER_PATH, *, C: float = DEFAULT_C,
          corpus_version: str = "") -> TrainReport:
    """Train on ``docs`` and write the weights file ``out``."""
    import scipy
    import sklearn
    from scipy import sparse

    docs = sorted(docs, key=lambda d: d.id)
    if len({d.id for d in docs}) != len(docs):
        raise ValueError("训练语料中有重复的文档编号")
    rules_engine = Engine(mode="rules")
    lexicon_names = sorted(rules_engine.index.ids)
    lexicons = tuple((name, rules_engine.index.ids[name]) for name in lexicon_names)
    rule_ids = tuple(sorted(rule.id for rule in rules_engine.rules))
    grams, dense, has_anchor, rule_pred, silent = _matrix(rules_engine, docs, lexicons, rule_ids)
    df = np.asarray((grams > 0).sum(axis=0)).ravel()
    keep_cols = np.flatnonzero(df >= MIN_DF)
    grams = grams[:, keep_cols]
    X = sparse.hstack([grams, sparse.csr_matrix(dense)], format="csr")
    Y = np.array([[c in d.labels for c in CATEGORIES] for d in docs])
    clean = ~Y.any(axis=1)
    # Decisions are chosen on the documents written without sight of the rules (those with an
    # ``origin``: the independent corpus) when there are enough of them: on a corpus written beside
    # the rules, agreeing with the rules is easy and would weigh them too much.
    independent = np.array([bool(d.extra.get("origin")) for d in docs])
    choose_on = independent if independent.sum() >= MIN_CHOOSE else np.ones(len(docs), dtype=bool)
    folds = np.array([_fold(d.id) for d in docs])
    oof = np.zeros(Y.shape)
    for k in range(FOLDS):
        tr, te = folds != k, folds == k
        for j in range(len(CATEGORIES)):
            if Y[tr, j].any() and not Y[tr, j].all():
                oof[te, j] = _fit(X[tr], Y[tr, j], C).predict_proba(X[te])[:, 1]
    oof[~has_anchor] = 0.0  # the engine runs the scorer only on documents with an anchor term
    oof[silent] = 0.0  # nor lets it speak where the gate hears no seller (learned.SILENT_REGISTERS)
    decisions, oof_scores = {}, {}
    for j, c in enumerate(CATEGORIES):
        decisions[c], oof_scores[c] = _choose(Y[choose_on, j], oof[choose_on, j], rule_pred[choose_on, j],
                                              clean[choose_on])
    n_grams = len(keep_cols)
    w_ngram_kept = np.zeros((n_grams, len(CATEGORIES)))
    w_dense = np.zeros((dense.shape[1], len(CATEGORIES)))
    bias = np.zeros(len(CATEGORIES))
    for j in range(len(CATEGORIES)):
        model = _fit(X, Y[:, j], C)
        w_ngram_kept[:, j] = model.coef_[0, :n_grams]
        w_dense[:, j] = model.coef_[0, n_grams:]
        bias[j] = model.intercept_[0]
    nonzero = np.flatnonzero(np.abs(w_ngram_kept).max(axis=1) > 1e-6)
    digest = corpus_digest(docs)
    version = f"{rules_engine.rules_version}+m{digest[:8]}"
    meta = {
        "version": version, "feature_version": FEATURE_VERSION, "bits": BITS, "ngram": list(NGRAM),
        "categories": list(CATEGORIES), "dense_names": dense_names(lexicon_names, list(rule_ids)),
        "corpus_sha256": digest, "corpus_version": corpus_version, "n_docs": len(docs), "C": C,
        "min_df": MIN_DF, "folds": FOLDS, "decisions": decisions, "oof_f1": oof_scores,
        "decisions_chosen_on": int(choose_on.sum()),
        "libraries": {"numpy": np.__version__, "scipy": scipy.__version__, "scikit-learn": sklearn.__version__},
    }
    sha = write_scorer(out, meta=meta, rows=keep_cols[nonzero], w_ngram=w_ngram_kept[nonzero],
                       w_dense=w_dense, bias=bias)
    return TrainReport(Path(out), sha, version, len(docs), len(nonzero), decisions, oof_scores)
