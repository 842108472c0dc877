"""Runs every rule's own examples: each ``examples.match`` text must produce a finding of that rule,
each ``examples.no_match`` text (a near miss) must not."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExampleOutcome:
    rule: str
    kind: str  # "match" or "no_match"
    text: str
    passed: bool
    found: tuple[str, ...]  # rule ids the engine reported on this text


def run_examples(engine) -> list[ExampleOutcome]:
    outcomes = []
    for rule in engine.rules:
        for kind, texts in (("match", rule.examples_match), ("no_match", rule.examples_no_match)):
            for text in texts:
                found = tuple(f.rule for f in engine.detect(text).findings)
                hit = rule.id in found
                outcomes.append(ExampleOutcome(rule.id, kind, text, hit if kind == "match" else not hit, found))
    return outcomes


def rules_without_examples(engine) -> list[str]:
    return [r.id for r in engine.rules if not r.examples_match or not r.examples_no_match]
