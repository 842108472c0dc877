"""The demo site's ground truth, read from ``answer_key.json``.

``load_answer_key()`` returns an ``AnswerKey``:

- ``violations``: path -> ``Violation`` (``categories``, ``families``, ``institution`` (full name or
  None), ``render``, ``note``); a Violation is also a read-only mapping: ``v["categories"]``, ``v.get("render")``.
- ``clean``: reachable paths that must not be flagged (``clean_notes`` says why for each).
- ``disallowed``: paths robots.txt blocks (never to be fetched).
- ``broken``: paths answering 500, 404 or a 302 loop.
- ``trap_prefix``: prefix of the endless calendar pages.
- ``navigation``: listing and portal pages, reachable but not scored (no source stores them).
- ``institutions``: id -> ``Institution`` (name, brand, phone, wechat, address, pages).

All paths are site-relative and start with "/".
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


class AnswerKeyError(Exception):
    """answer_key.json is missing or malformed."""


@dataclass(frozen=True)
class Violation(Mapping):
    """One violating page; attributes, or read-only mapping access shaped like the JSON entry."""

    categories: tuple[str, ...]
    families: tuple[str, ...]
    institution: str | None
    render: bool
    note: str

    def __getitem__(self, key: str):
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        value = getattr(self, key)
        return list(value) if isinstance(value, tuple) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)


@dataclass(frozen=True)
class Institution:
    id: str
    name: str
    brand: str
    phone: str
    wechat: str | None
    address: str
    pages: tuple[str, ...]


@dataclass(frozen=True)
class AnswerKey:
    violations: dict[str, Violation]
    clean: list[str]
    clean_notes: dict[str, str]
    disallowed: list[str]
    broken: list[str]
    trap_prefix: str
    navigation: list[str]
    institutions: dict[str, Institution]

    def reachable(self) -> list[str]:
        """Every scored page that answers 200: violations then clean pages."""
        return sorted(self.violations) + list(self.clean)

    def expected_categories(self, path: str) -> set[str]:
        """Categories a detector should find on ``path`` (empty for clean or unknown pages)."""
        found = self.violations.get(path)
        return set(found.categories) if found else set()


def _parse(raw: dict, origin: str) -> AnswerKey:
    try:
        violations = {
            path: Violation(
                categories=tuple(v["categories"]),
                families=tuple(v.get("families", ())),
                institution=v["institution"],
                render=bool(v["render"]),
                note=str(v["note"]),
            )
            for path, v in raw["violations"].items()
        }
        institutions = {
            inst_id: Institution(id=inst_id, name=i["name"], brand=i["brand"], phone=i["phone"],
                                 wechat=i.get("wechat"), address=i["address"], pages=tuple(i["pages"]))
            for inst_id, i in raw.get("institutions", {}).items()
        }
        return AnswerKey(
            violations=violations,
            clean=list(raw["clean"]),
            clean_notes=dict(raw.get("clean_notes", {})),
            disallowed=list(raw["disallowed"]),
            broken=list(raw["broken"]),
            trap_prefix=str(raw["trap_prefix"]),
            navigation=list(raw.get("navigation", ())),
            institutions=institutions,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnswerKeyError(f"答案文件 {origin} 格式错误：缺少或无效的字段 {exc}") from exc


def load_answer_key(path: str | Path | None = None) -> AnswerKey:
    """Load the bundled answer key, or the one at ``path``."""
    if path is None:
        source = resources.files("crawler.demo").joinpath("answer_key.json")
        origin = str(source)
    else:
        source = Path(path)
        origin = str(path)
    try:
        raw = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AnswerKeyError(f"答案文件 {origin} 无法读取：{exc}") from exc
    return _parse(raw, origin)
