"""Reading the labelled corpus (``tests/corpus/*.jsonl``) for evaluation and benchmarks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .model import CATEGORIES


class CorpusError(ValueError):
    """A corpus line is malformed (message names file, line and field)."""


@dataclass(frozen=True, slots=True)
class CorpusDoc:
    id: str
    text: str
    labels: tuple[str, ...]
    sub: tuple[str, ...] = ()
    group: str = ""
    title: str | None = None
    url: str | None = None
    extra: dict = field(default_factory=dict, compare=False)


def _parse(path: Path, lineno: int, line: str) -> CorpusDoc:
    where = f"{path.name} 第 {lineno} 行"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{where}：JSON 无效：{exc.msg}") from None
    if not isinstance(data, dict):
        raise CorpusError(f"{where}：应为 JSON 对象")
    for key in ("id", "text", "labels"):
        if key not in data:
            raise CorpusError(f"{where}：缺少字段 {key}")
    if not isinstance(data["text"], str):
        raise CorpusError(f"{where}：字段 text 应为字符串")
    labels = data["labels"]
    if not isinstance(labels, list) or any(label not in CATEGORIES for label in labels):
        raise CorpusError(f"{where}：字段 labels 含未知类别：{labels!r}")
    known = {"id", "text", "labels", "sub", "group", "title", "url"}
    return CorpusDoc(str(data["id"]), data["text"], tuple(labels), tuple(data.get("sub") or ()),
                     str(data.get("group") or ""), data.get("title"), data.get("url"),
                     {k: v for k, v in data.items() if k not in known})


def load_corpus(path: Path | str) -> list[CorpusDoc]:
    """Documents of one ``.jsonl`` file, or of every ``*.jsonl`` in a directory (sorted by name)."""
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise CorpusError(f"{path}：找不到语料文件（*.jsonl）")
    docs: list[CorpusDoc] = []
    for file in files:
        with file.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    docs.append(_parse(file, lineno, line))
    return docs
