"""Per-category precision and recall of an engine over labelled documents."""

from __future__ import annotations

from dataclasses import dataclass, field

from .corpus import CorpusDoc
from .model import CATEGORIES


@dataclass(slots=True)
class CategoryScore:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def support(self) -> int:
        return self.tp + self.fn


@dataclass(slots=True)
class Evaluation:
    per_category: dict[str, CategoryScore]
    # (doc id, category, "fp" or "fn") for every error, to print or inspect
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    # documents with no label that still got a finding (hard negatives answered wrongly)
    negatives_flagged: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {c: {"precision": s.precision, "recall": s.recall, "tp": s.tp, "fp": s.fp, "fn": s.fn,
                    "support": s.support} for c, s in self.per_category.items()}

    def __getitem__(self, category: str) -> CategoryScore:
        return self.per_category[category]


def evaluate(engine, docs: list[CorpusDoc]) -> Evaluation:
    """Run ``engine.detect`` on every document and compare its categories with the labels."""
    scores = {c: CategoryScore() for c in CATEGORIES}
    result = Evaluation(scores)
    for doc in docs:
        got = set(engine.detect(doc.text, title=doc.title, url=doc.url).categories)
        want = set(doc.labels)
        for c in CATEGORIES:
            if c in got and c in want:
                scores[c].tp += 1
            elif c in got:
                scores[c].fp += 1
                result.errors.append((doc.id, c, "fp"))
            elif c in want:
                scores[c].fn += 1
                result.errors.append((doc.id, c, "fn"))
        if got and not want:
            result.negatives_flagged.append(doc.id)
    return result
