"""Detection quality on the frozen test split of the independent corpus (tests/corpus/independent).

The issue's target is precision and recall >= 0.95 for every main category and no news, policy,
enforcement, complaint-reply or consumer-warning text flagged. The shipped engine does not reach it
yet (README, "Quality, measured"), so these floors are a ratchet: each sits just under the figure
the engine reaches today and fails as soon as detection gets worse. Raise them as it gets better;
never lower them to make a change pass. Each floor is shown to be able to fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors import get_engine
from detectors.corpus import load_corpus
from detectors.metrics import evaluate
from tests.quality_fakes import DropCategory, FlagEverything

TEST_SPLIT = Path(__file__).parent / "corpus" / "independent" / "test.jsonl"
TARGET = 0.95
# (precision, recall) floors of the combined engine on the test split; today's figures are in README
FLOORS = {
    "banned_ad": (0.94, 0.94),
    "exaggerated_marketing": (0.89, 0.77),
    "disguised_tutoring": (0.88, 0.84),
}
NEVER_KINDS = {"news", "policy", "enforcement", "complaint_reply", "consumer_warning"}
# of the test split's 397 such texts; the target is 0. (Wave 3 grew the split from 1,204 to 1,650
# documents on 2026-12-04; the floors were set anew on the grown split, see the corpus changelog.)
MAX_NEVER_FLAGGED = 13
MAX_CLEAN_FLAGGED = 0.065


def quality_problems(engine, docs) -> list[str]:
    evaluation = evaluate(engine, docs)
    problems = []
    for category, floors in FLOORS.items():
        score = evaluation[category]
        for name, value, floor in (("precision", score.precision, floors[0]), ("recall", score.recall, floors[1])):
            if value < floor:
                problems.append(f"{category} {name} {value:.3f} < {floor}")
    clean = [d for d in docs if not d.labels]
    flagged = set(evaluation.negatives_flagged)
    never = sorted(d.id for d in clean if d.extra.get("kind") in NEVER_KINDS and d.id in flagged)
    if len(never) > MAX_NEVER_FLAGGED:
        problems.append(f"news/policy/enforcement/reply/warning texts flagged: {len(never)} > {MAX_NEVER_FLAGGED}")
    share = len(flagged) / len(clean)
    if share > MAX_CLEAN_FLAGGED:
        problems.append(f"clean texts flagged: {share:.1%} > {MAX_CLEAN_FLAGGED:.0%}")
    return problems


@pytest.fixture(scope="module")
def docs():
    loaded = load_corpus(TEST_SPLIT)
    assert len(loaded) >= 1600
    assert all(d.extra.get("split") == "test" for d in loaded)
    return loaded


def test_engine_holds_its_floors_on_the_test_split(docs):
    problems = quality_problems(get_engine(), docs)
    assert not problems, "\n".join(problems)


def test_floors_are_below_the_target_and_not_above_it():
    """A floor above the target would be a typo; the ratchet only climbs towards 0.95."""
    assert all(0.5 <= p <= TARGET and 0.5 <= r <= TARGET for p, r in FLOORS.values())


@pytest.mark.parametrize("category", list(FLOORS))
def test_recall_floor_can_fail(docs, category):
    problems = quality_problems(DropCategory(get_engine(), category), docs)
    assert any(p.startswith(f"{category} recall") for p in problems), problems


def test_precision_news_and_clean_floors_can_fail(docs):
    problems = quality_problems(FlagEverything(FLOORS), docs)
    for category in FLOORS:
        assert any(p.startswith(f"{category} precision") for p in problems), problems
    assert any(p.startswith("news/policy") for p in problems), problems
    assert any(p.startswith("clean texts flagged") for p in problems), problems
