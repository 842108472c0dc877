"""Detection quality on the independent corpus: rules only, model only and combined, dev and test.

    python benchmarks/detect_quality.py [--split dev|test|both] [--errors N]

Prints per main category precision / recall / F1, the share of clean texts flagged, and how many
news / policy / enforcement / complaint-reply / consumer-warning texts were flagged (the project's
"never" set).  ``--errors N`` lists up to N misses and false alarms of the combined engine, and only
for the dev split: the test split is for figures, never for reading.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.corpus import load_corpus  # noqa: E402
from detectors.engine import Engine  # noqa: E402
from detectors.metrics import evaluate  # noqa: E402
from detectors.model import CATEGORIES  # noqa: E402

CORPUS = ROOT / "tests" / "corpus" / "independent"
NEVER = ("news", "policy", "enforcement", "complaint_reply", "consumer_warning")
MAIN = CATEGORIES[:3]


def f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def report(name: str, engine: Engine, docs) -> dict:
    t0 = time.perf_counter()
    ev = evaluate(engine, docs)
    secs = time.perf_counter() - t0
    clean = [d for d in docs if not d.labels]
    flagged = set(ev.negatives_flagged)
    never = [d.id for d in clean if d.extra.get("kind") in NEVER and d.id in flagged]
    row = {c: (ev[c].precision, ev[c].recall, f1(ev[c].precision, ev[c].recall), ev[c].support) for c in CATEGORIES}
    worst = min(row[c][2] for c in MAIN)
    print(f"  {name:<9}" + "".join(f"  {row[c][0]:.3f}/{row[c][1]:.3f}/{row[c][2]:.3f}" for c in CATEGORIES)
          + f"  {worst:.3f}  {len(flagged) / max(1, len(clean)):6.1%}  {len(never):>3}  ({secs:.1f} s)")
    return {"eval": ev, "never": never, "worst": worst}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("dev", "test", "both"), default="both")
    ap.add_argument("--errors", type=int, default=0, help="list up to N errors of the combined engine (dev only)")
    args = ap.parse_args()
    engines = [("rules", Engine(mode="rules")), ("model", Engine(mode="model")), ("combined", Engine())]
    print(f"model {engines[2][1].scorer.version if engines[2][1].scorer else '(none)'}")
    splits = ("dev", "test") if args.split == "both" else (args.split,)
    for split in splits:
        docs = load_corpus(CORPUS / f"{split}.jsonl")
        n_clean = sum(1 for d in docs if not d.labels)
        print(f"\n{split}: {len(docs)} documents ({n_clean} clean); per category P/R/F1:")
        print(f"  {'':<9}" + "".join(f"  {c[:20]:<20}" for c in CATEGORIES) + "  worst  clean-flagged  never")
        results = {name: report(name, engine, docs) for name, engine in engines}
        if split == "dev" and args.errors:
            by_id = {d.id: d for d in docs}
            for doc_id, category, kind in results["combined"]["eval"].errors[: args.errors]:
                d = by_id[doc_id]
                print(f"  {kind} {category:<22} {doc_id:<10} {d.extra.get('kind', ''):<14} {d.text[:90]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
