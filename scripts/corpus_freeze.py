"""Freeze the independent corpus: writers' raw files -> dev.jsonl and test.jsonl, once.

    python scripts/corpus_freeze.py tests/corpus/independent [--add]

Validates every raw line (one-line errors naming file, line and field), drops exact duplicate texts,
and splits stratified by (label set or clean trap, kind group, length band, origin): inside each
stratum, documents ordered by a hash of their id and text go to test at every position where the
running ceil(0.3 * n) grows, so every stratum gives test at least 30 % and dev at most 70 %.

The split is frozen: when dev.jsonl/test.jsonl exist the script refuses to run again unless --add is
given, and then only raw documents not yet frozen are split (by the same rule, among themselves);
nothing already frozen moves.  It prints counts only, never test texts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections import Counter, defaultdict
from pathlib import Path

FAMILIES = {"BA": "banned_ad", "EM": "exaggerated_marketing", "DT": "disguised_tutoring", "MT": "minor_training_ad"}
ORDER = list(FAMILIES.values())
KINDS = {"listing_title", "notice", "moments", "parent_group", "article", "poster_ocr", "institution_page",
         "video_caption", "classified", "news", "policy", "enforcement", "complaint_reply", "consumer_warning",
         "question", "job_ad", "goods", "school_notice", "other"}
REGISTER_KINDS = {"news", "policy", "enforcement", "complaint_reply", "consumer_warning", "question", "job_ad",
                  "goods", "school_notice"}
FIELDS = ("id", "text", "labels", "sub", "kind", "evasion", "trap", "source", "why")
TEST_SHARE = 0.3


class FreezeError(ValueError):
    pass


def _family(sub: str) -> str:
    key = sub[:2]
    if key not in FAMILIES:
        raise ValueError(f"未知子类 {sub!r}")
    return FAMILIES[key]


def validate(path: Path, lineno: int, line: str) -> dict:
    where = f"{path.name}:{lineno}"
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as exc:
        raise FreezeError(f"{where}: not JSON ({exc.msg})") from None
    for key in FIELDS:
        if key not in doc:
            raise FreezeError(f"{where}: missing field {key}")
    if not isinstance(doc["text"], str) or not doc["text"].strip():
        raise FreezeError(f"{where}: field text is empty")
    labels, sub = doc["labels"], doc["sub"]
    if any(label not in ORDER for label in labels):
        raise FreezeError(f"{where}: field labels has an unknown category {labels!r}")
    try:
        families = {_family(s) for s in sub}
    except ValueError as exc:
        raise FreezeError(f"{where}: field sub: {exc}") from None
    if families != set(labels):
        raise FreezeError(f"{where}: field sub {sub!r} does not match labels {labels!r}")
    if doc["kind"] not in KINDS:
        raise FreezeError(f"{where}: field kind {doc['kind']!r} is not a known kind")
    doc["labels"] = [c for c in ORDER if c in labels]  # the fixed order
    doc["origin"] = "rewritten" if doc.get("source") else "blind"
    doc["writer"] = path.stem
    return doc


def stratum(doc: dict) -> tuple:
    n = len(doc["text"])
    band = "short" if n <= 60 else "long" if n >= 2000 else "medium"
    kind = "register" if doc["kind"] in REGISTER_KINDS else "ad_shape"
    labels = "+".join(doc["labels"]) or f"clean:{doc.get('trap') or 'other'}"
    return labels, kind, band, doc["origin"]


def split(docs: list[dict]) -> None:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for doc in docs:
        groups[stratum(doc)].append(doc)
    for members in groups.values():
        members.sort(key=lambda d: hashlib.sha256((d["id"] + "\x00" + d["text"]).encode()).hexdigest())
        for i, doc in enumerate(members):
            grew = math.ceil((i + 1) * TEST_SHARE) > math.ceil(i * TEST_SHARE)
            doc["split"] = "test" if grew else "dev"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--add", action="store_true", help="split raw documents not frozen yet")
    args = ap.parse_args(argv)
    raw_dir, dev_path, test_path = args.folder / "raw", args.folder / "dev.jsonl", args.folder / "test.jsonl"
    frozen: list[dict] = []
    if dev_path.exists() or test_path.exists():
        if not args.add:
            print(f"error: {args.folder} is already frozen (use --add for new raw documents)", file=sys.stderr)
            return 2
        for p in (dev_path, test_path):
            frozen += [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    seen_ids = {d["id"] for d in frozen}
    seen_texts = {d["text"].strip() for d in frozen}
    new: list[dict] = []
    dropped = Counter()
    try:
        for path in sorted(raw_dir.glob("*.jsonl")):
            for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                doc = validate(path, lineno, line)
                if doc["id"] in seen_ids:
                    if any(d["id"] == doc["id"] and d["text"] == doc["text"] for d in frozen):
                        continue  # already frozen
                    raise FreezeError(f"{path.name}:{lineno}: duplicate id {doc['id']}")
                if doc["text"].strip() in seen_texts:
                    dropped["duplicate text"] += 1
                    continue
                seen_ids.add(doc["id"])
                seen_texts.add(doc["text"].strip())
                new.append(doc)
    except FreezeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    split(new)
    everything = frozen + new
    for name, path in (("dev", dev_path), ("test", test_path)):
        rows = sorted((d for d in everything if d["split"] == name), key=lambda d: d["id"])
        with path.open("w", encoding="utf-8") as fh:
            for d in rows:
                fh.write(json.dumps(d, ensure_ascii=False) + "\n")
    count = Counter(d["split"] for d in everything)
    print(f"frozen {len(everything)} documents ({len(new)} new; dropped {dict(dropped) or 0}): "
          f"dev {count['dev']}, test {count['test']} ({count['test'] / max(1, len(everything)):.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
