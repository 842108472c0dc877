"""``xunjian detect``: JSON Lines in, one JSON line of findings out per input line, in order.

A bad line (invalid UTF-8, not JSON, not an object, no text, a non-string title or url, a lone
surrogate, NaN, a number too long to convert, nesting too deep for the parser, more than
``MAX_LINE_BYTES``) is reported on stderr with its line number and skipped; the other lines are still
processed, and the exit code tells that something was skipped.  The input is hostile (crawled text),
so no line can stop the command.
"""

from __future__ import annotations

import json
import math
from typing import BinaryIO, Iterator

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from crawler.console import CATEGORY_NAMES, plain, visible

EXIT_OK = 0
EXIT_SKIPPED = 1
MAX_LINE_BYTES = 10 * 1024 * 1024  # a longer line is refused without being held in memory
_DRAIN_CHUNK = 1 << 20
_MAX_DIGITS = 4300  # Python's own int conversion limit (sys.get_int_max_str_digits), reported in Chinese


class _BadLine(ValueError):
    """Why one input line cannot be used; the message is what the inspector reads."""


def _lines(stream: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """Yield (line number, bytes), or (line number, None) for a line over ``limit`` bytes.

    An over-long line is read on and dropped in chunks, so memory stays bounded whatever the input."""
    lineno = 0
    while raw := stream.readline(limit + 1):
        lineno += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            while (chunk := stream.readline(_DRAIN_CHUNK)) and not chunk.endswith(b"\n"):
                pass
            raw = None
        yield lineno, raw


def _parse_int(digits: str) -> int:
    if len(digits.lstrip("-")) > _MAX_DIGITS:
        raise _BadLine(f"数字过长（{len(digits.lstrip('-'))} 位，上限 {_MAX_DIGITS} 位）")
    return int(digits)


def _parse_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _BadLine(f"数值 {literal[:20]}{'…' if len(literal) > 20 else ''} 超出范围")
    return value


def _parse_constant(name: str):
    raise _BadLine(f"含有 {name}（不是标准 JSON）")


def _document(raw: bytes | None) -> dict | None:
    """The document on one line (None for a blank line); raise ``_BadLine`` when it cannot be used."""
    if raw is None:
        raise _BadLine(f"超过 {MAX_LINE_BYTES // (1024 * 1024)} MB 的行长度上限")
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadLine(f"不是有效的 UTF-8（第 {exc.start + 1} 字节）") from None
    if "\x00" in line:
        raise _BadLine("含有二进制数据（NUL 字节）")
    if not line.strip():
        return None
    try:
        doc = json.loads(line, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        raise _BadLine(f"不是有效的 JSON（第 {exc.colno} 列：{exc.msg}）") from None
    except RecursionError:
        raise _BadLine("JSON 嵌套过深") from None
    if not isinstance(doc, dict):
        raise _BadLine("应为 JSON 对象")
    if not isinstance(doc.get("text"), str):
        raise _BadLine("缺少字符串字段 \"text\"")
    for key in ("title", "url"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise _BadLine(f"字段 \"{key}\" 应为字符串，实际为 {type(doc[key]).__name__}")
    for key in ("id", "text", "title", "url"):  # a lone surrogate ("\ud800") can be neither detected nor written
        try:
            json.dumps(doc.get(key), ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _BadLine(f"字段 \"{key}\" 含有不成对的代理字符 U+{ord(exc.object[exc.start]):04X}") from None
    return doc


def read_documents(stream: BinaryIO, errors: list[str]) -> Iterator[tuple[int, dict]]:
    """Yield (line number, document) for good lines; append one message per bad line to ``errors``."""
    for lineno, raw in _lines(stream, MAX_LINE_BYTES):
        try:
            doc = _document(raw)
        except _BadLine as exc:
            errors.append(f"第 {lineno} 行：{exc}，已跳过")
            continue
        if doc is not None:
            yield lineno, doc


def result_line(doc: dict, lineno: int, result) -> dict:
    return {
        "id": doc.get("id", lineno),
        "categories": list(result.categories),
        "score": round(float(result.score), 4),
        "rules_version": result.rules_version,
        "findings": [
            {key: value for key, value in f.to_dict().items()
             if key in ("category", "subcategory", "rule", "severity", "start", "end", "text",
                        "normalized", "explanation", "basis")}
            for f in result.findings
        ],
    }


def highlighted(text: str, findings: list, context: int = 30) -> Text:
    """The document with every matched span highlighted, trimmed to the neighbourhood of the matches."""
    if not findings:
        return Text(visible(text[:120]) + ("…" if len(text) > 120 else ""))
    lo = max(0, min(f.start for f in findings) - context)
    hi = min(len(text), max(f.end for f in findings) + context)
    out = Text(("…" if lo else "") + visible(text[lo:hi]) + ("…" if hi < len(text) else ""))
    shift = 1 if lo else 0
    for f in findings:
        out.stylize("bold black on yellow", f.start - lo + shift, f.end - lo + shift)
    return out


def print_table(console: Console, doc_id, text: str, result) -> None:
    cats = "、".join(CATEGORY_NAMES.get(c, c) for c in result.categories) or "未发现问题"
    console.print(Text.assemble(plain(doc_id, "bold"), f"  {cats}  评分 {result.score:.2f}"))
    if not result.findings:
        return
    console.print(highlighted(text, result.findings))
    table = Table(header_style="bold", show_lines=False)
    for col in ("类别", "规则", "严重程度", "位置", "原文", "说明", "法律依据"):
        table.add_column(col, overflow="fold")
    for f in result.findings:
        table.add_row(f"{CATEGORY_NAMES.get(f.category, f.category)}（{f.subcategory}）", f.rule, str(f.severity),
                      f"{f.start}–{f.end}", plain(f.text), plain(f.explanation), plain(f.basis))
    console.print(table)


@click.command("detect")
@click.argument("file", type=click.File("rb"), default="-", required=False)
@click.option("--format", "fmt", type=click.Choice(["jsonl", "table"]), default="jsonl", show_default=True,
              help="jsonl: one JSON object per input line; table: for a person, matches highlighted.")
def detect(file: BinaryIO, fmt: str) -> None:
    """Detect violations in JSON Lines ({"id", "text", "title"?, "url"?}) from FILE or stdin.

    Exit code 0 when every line was processed, 1 when bad lines were reported on stderr and skipped.
    """
    from detectors import get_engine

    engine = get_engine()
    errors: list[str] = []
    bad = 0
    console = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
    stdout = click.get_text_stream("stdout")

    def report() -> int:
        for message in errors:
            click.echo(f"错误：{_name(file)}：{message}", err=True)
        count = len(errors)
        errors.clear()
        return count

    for lineno, doc in read_documents(file, errors):
        bad += report()
        result = engine.detect(doc["text"], title=doc.get("title"), url=doc.get("url"))
        if fmt == "table":
            print_table(console, doc.get("id", lineno), doc["text"], result)
        else:
            stdout.write(json.dumps(result_line(doc, lineno, result), ensure_ascii=False) + "\n")
            stdout.flush()
    bad += report()
    raise SystemExit(EXIT_SKIPPED if bad else EXIT_OK)


def _name(file) -> str:
    name = getattr(file, "name", "-")
    return "标准输入" if name in ("-", "<stdin>") else str(name)
