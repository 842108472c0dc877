"""Document score and category order from findings.

Each rule contributes a probability-like weight from its severity, growing with repeated matches
(1, 2, 3+ matches give 60%, 80%, 100% of the weight); the score is the noisy-OR of the rules, so
it is 0 without findings, grows with severity and evidence, and never exceeds 1.
"""

from __future__ import annotations

from .model import CATEGORIES, Finding

SEVERITY_WEIGHT = {1: 0.08, 2: 0.2, 3: 0.4, 4: 0.6, 5: 0.8}
_REPEAT_FACTOR = {1: 0.6, 2: 0.8}


def score(findings: list[Finding]) -> float:
    if not findings:
        return 0.0
    per_rule: dict[str, tuple[int, int]] = {}
    for f in findings:
        sev, count = per_rule.get(f.rule, (0, 0))
        per_rule[f.rule] = (max(sev, f.severity), count + 1)
    miss = 1.0
    for sev, count in per_rule.values():
        miss *= 1.0 - SEVERITY_WEIGHT[sev] * _REPEAT_FACTOR.get(count, 1.0)
    return round(1.0 - miss, 4)


def order_categories(findings: list[Finding]) -> list[str]:
    """Categories present, most severe first (ties: fixed order of ``CATEGORIES``)."""
    best: dict[str, int] = {}
    for f in findings:
        best[f.category] = max(best.get(f.category, 0), f.severity)
    return sorted(best, key=lambda c: (-best[c], CATEGORIES.index(c)))
