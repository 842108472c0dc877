"""Result types of the detection engine: ``Finding`` and ``DocumentResult``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Category names, in the fixed order used to break ties when sorting by severity.
CATEGORIES = ("banned_ad", "exaggerated_marketing", "disguised_tutoring", "minor_training_ad")

CATEGORY_LABELS = {
    "banned_ad": "违规学科类培训广告",
    "exaggerated_marketing": "夸大虚假宣传",
    "disguised_tutoring": "隐形变异培训",
    "minor_training_ad": "面向未成年人的非学科类培训广告",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule match.  ``start``/``end`` index the original text passed to ``detect``."""

    category: str
    subcategory: str
    rule: str
    severity: int
    start: int
    end: int
    text: str
    normalized: str
    explanation: str
    basis: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """The document gate's view of a text: is it selling something, and to whom."""

    promotional: bool
    audience: tuple[str, ...] = ()
    register: str = "unknown"  # "advert", "report", "policy", "question", "job", "goods", "school"
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"promotional": self.promotional, "audience": list(self.audience),
                "register": self.register, "reasons": list(self.reasons)}


@dataclass(slots=True)
class DocumentResult:
    """Everything the engine concluded about one document."""

    findings: list[Finding]
    categories: list[str]
    score: float
    rules_version: str
    gate: GateVerdict = field(default_factory=lambda: GateVerdict(False))
    # the learned scorer's probability per category (None when the scorer did not run)
    probabilities: dict[str, float] | None = None
    model_version: str | None = None

    @property
    def promotional(self) -> bool:
        return self.gate.promotional

    def to_dict(self) -> dict:
        return {
            "categories": list(self.categories),
            "score": self.score,
            "rules_version": self.rules_version,
            "promotional": self.promotional,
            "gate": self.gate.to_dict(),
            "probabilities": self.probabilities,
            "model_version": self.model_version,
            "findings": [f.to_dict() for f in self.findings],
        }
