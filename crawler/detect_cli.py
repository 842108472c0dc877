"""``xunjian detect``: JSON Lines in, one JSON line of findings out per input line, in order.

A bad line (invalid UTF-8, not JSON, not an object, no text) is reported on stderr with its line number
and skipped; the other lines are still processed, and the exit code tells that something was skipped.
"""

from __future__ import annotations

import json
from typing import BinaryIO, Iterator

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from crawler.console import CATEGORY_NAMES

EXIT_OK = 0
EXIT_SKIPPED = 1


def read_documents(stream: BinaryIO, errors: list[str]) -> Iterator[tuple[int, dict]]:
    """Yield (line number, document) for good lines; append one message per bad line to ``errors``."""
    for lineno, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append(f"第 {lineno} 行：不是有效的 UTF-8（第 {exc.start + 1} 字节），已跳过")
            continue
        if "\x00" in line:
            errors.append(f"第 {lineno} 行：含有二进制数据（NUL 字节），已跳过")
            continue
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"第 {lineno} 行：不是有效的 JSON（第 {exc.colno} 列：{exc.msg}），已跳过")
            continue
        if not isinstance(doc, dict):
            errors.append(f"第 {lineno} 行：应为 JSON 对象，已跳过")
            continue
        text = doc.get("text")
        if not isinstance(text, str):
            errors.append(f"第 {lineno} 行：缺少字符串字段 \"text\"，已跳过")
            continue
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
        return Text(text[:120] + ("…" if len(text) > 120 else ""))
    lo = max(0, min(f.start for f in findings) - context)
    hi = min(len(text), max(f.end for f in findings) + context)
    out = Text(("…" if lo else "") + text[lo:hi] + ("…" if hi < len(text) else ""))
    shift = 1 if lo else 0
    for f in findings:
        out.stylize("bold black on yellow", f.start - lo + shift, f.end - lo + shift)
    return out


def print_table(console: Console, doc_id, text: str, result) -> None:
    cats = "、".join(CATEGORY_NAMES.get(c, c) for c in result.categories) or "未发现问题"
    console.print(f"[bold]{doc_id}[/]  {cats}  评分 {result.score:.2f}")
    if not result.findings:
        return
    console.print(highlighted(text, result.findings))
    table = Table(header_style="bold", show_lines=False)
    for col in ("类别", "规则", "严重程度", "位置", "原文", "说明", "法律依据"):
        table.add_column(col, overflow="fold")
    for f in result.findings:
        table.add_row(f"{CATEGORY_NAMES.get(f.category, f.category)}（{f.subcategory}）", f.rule, str(f.severity),
                      f"{f.start}–{f.end}", f.text, f.explanation, f.basis)
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
    console = Console(highlight=False, soft_wrap=True)
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
