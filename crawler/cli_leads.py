"""Lead commands: the daily list, one lead in detail, review actions, merge and split.

Exit codes: 0 success; 1 refused (unknown lead, transition not allowed, database
unavailable); 2 usage (missing --by, no or several actions, bad id or date).
Every error is one line on stderr starting with 错误：.
"""

from __future__ import annotations

import json
from datetime import date

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from crawler.console import (CATEGORY_NAMES, SEVERITY_STYLES, category_names, leads_table, local_time, make_console,
                             plain)

from crawler.cli_common import EXIT_BAD_INPUT as EXIT_USAGE
from crawler.cli_common import CliError as LeadCliError
from crawler.cli_common import OneLineCommand as OneLineErrors
from crawler.cli_common import db_option as _db_option
from crawler.cli_common import open_db as _open_db


def _by_option(func):
    return click.option("--by", "by", metavar="NAME", help="Who does this (required, recorded in the audit trail).")(func)


def _reason_option(func):
    return click.option("--reason", metavar="TEXT", default="", help="Why (recorded in the audit trail).")(func)


def _lead_id(value: str, what: str = "线索编号") -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise LeadCliError(f"{what}应为正整数，实际为 {value!r}", EXIT_USAGE)
    return number


def _require_by(by: str | None) -> str:
    if not by or not by.strip():
        raise LeadCliError("缺少 --by：请写明操作人姓名", EXIT_USAGE)
    return by.strip()


def _storage_call(func, *args, **kwargs):
    from storage.errors import StorageError

    try:
        return func(*args, **kwargs)
    except StorageError as exc:
        raise LeadCliError(str(exc)) from None


def _status(status: str) -> str:
    from storage.workflow import status_name

    return status_name(status)


def _counts_line(label: str, counts: dict[str, int], names: dict[str, str]) -> str:
    if not counts:
        return f"{label}：无"
    return f"{label}：" + "，".join(f"{names.get(key, key)} {value} 条" for key, value in counts.items())


@click.command(cls=OneLineErrors)
@click.option("--date", "day", metavar="YYYY-MM-DD", help="The day (Asia/Shanghai); default today.")
@_db_option
def daily(day: str | None, db_url: str | None) -> None:
    """The day's list: leads with new evidence that day, most serious first."""
    from storage.views import daily_list
    from storage.workflow import STATUS_NAMES

    parsed: date | None = None
    if day is not None:
        try:
            parsed = date.fromisoformat(day)
        except ValueError:
            raise LeadCliError(f"--date 应为 YYYY-MM-DD 格式的日期，实际为 {day!r}", EXIT_USAGE) from None
    db = _open_db(db_url)
    result = _storage_call(daily_list, db, parsed)
    console = make_console()
    console.print(Text.assemble((f"{result.day.isoformat()} 巡查日报", "bold"),
                                f"（北京时间，当天有新证据的线索 {len(result.leads)} 条）"))
    if not result.leads:
        console.print("当天没有新证据的线索。")
        return
    console.print(plain(_counts_line("按违规类型", result.by_category, CATEGORY_NAMES)))
    console.print(plain(_counts_line("按处理状态", result.by_status, STATUS_NAMES)))
    console.print(leads_table(result.leads, "线索列表（按严重程度排序）"))


@click.group()
def lead() -> None:
    """Look at, merge or split leads."""


def _header(console: Console, detail) -> None:
    view = detail.lead
    style = SEVERITY_STYLES.get(view.severity, "")
    console.print(plain(f"线索 {view.id}：{view.name or '（未识别）'}", "bold"))
    console.print(Text.assemble(plain(f"状态：{_status(view.status)}　严重程度："),
                                plain(view.severity, style), f"　评分：{view.score:.2f}"))
    console.print(plain(f"违规类型：{category_names(view.categories) or '无'}"))
    console.print(f"首次发现：{local_time(view.first_seen)}　最近发现：{local_time(view.last_seen)}"
                  f"　网页 {len(view.urls)} 个，发现 {view.finding_count} 条")
    if detail.merged_into is not None:
        console.print(plain(f"此线索已并入线索 {detail.merged_into}", "yellow"))


def _identifiers_table(detail) -> Table:
    from storage.identifiers import KIND_NAMES

    table = Table(title="标识信息", header_style="bold")
    for column in ("类型", "规范值", "原文写法", "网页数", "首次出现", "最近出现"):
        table.add_column(column)
    for ident in detail.identifiers:
        table.add_row(plain(KIND_NAMES.get(ident.kind, ident.kind)), plain(ident.value),
                      plain("；".join(ident.raws)[:80]), str(ident.pages), local_time(ident.first_seen),
                      local_time(ident.last_seen))
    return table


def _findings(console: Console, detail) -> None:
    console.print(plain(f"违规发现（{len(detail.findings)} 条）", "bold"))
    for number, item in enumerate(detail.findings, 1):
        style = SEVERITY_STYLES.get(item.severity, "")
        console.print(Text.assemble(f"{number}. ", plain(f"严重程度 {item.severity}", style),
                                    plain(f"　{CATEGORY_NAMES.get(item.category, item.category)}　规则 {item.rule}"
                                          f"　{item.url}　{local_time(item.fetched_at)}")))
        console.print(Text.assemble("   …", plain(item.before.replace("\n", " ")),
                                    plain(item.text, "bold red reverse"), plain(item.after.replace("\n", " ")), "…"))
        console.print(plain(f"   说明：{item.explanation}　依据：{item.basis}"))


def _evidence_table(detail) -> Table:
    table = Table(title="证据（网页快照）", header_style="bold")
    for column in ("快照", "网址", "抓取时间", "HTTP 状态", "内容 SHA-256", "发现", "存档文件"):
        table.add_column(column, overflow="fold")
    for snap in detail.snapshots:
        files = "；".join(f"{item.get('kind')} {str(item.get('sha256', ''))[:12]}" for item in snap.evidence)
        table.add_row(str(snap.id), plain(snap.url), local_time(snap.fetched_at), str(snap.status),
                      plain(snap.content_hash[:16]), str(snap.findings), plain(files or "无"))
    return table


def _history_table(detail) -> Table:
    from storage.audit import ACTION_NAMES

    table = Table(title="审计记录", header_style="bold")
    for column in ("时间", "操作人", "动作", "状态变化", "原因", "详情"):
        table.add_column(column, overflow="fold")
    for row in detail.history:
        change = ""
        if row.from_status != row.to_status or row.from_status is None:
            before = _status(row.from_status) if row.from_status else "—"
            change = f"{before} → {_status(row.to_status) if row.to_status else '—'}"
        details = json.dumps(row.details, ensure_ascii=False)[:120] if row.details else ""
        table.add_row(local_time(row.at), plain(row.actor), plain(ACTION_NAMES.get(row.action, row.action)), change,
                      plain(row.reason), plain(details))
    return table


@lead.command("show", cls=OneLineErrors)
@click.argument("lead_id", metavar="ID")
@_db_option
def lead_show(lead_id: str, db_url: str | None) -> None:
    """Show one lead: identifiers, findings in context, evidence and audit history."""
    from storage.views import lead_detail

    number = _lead_id(lead_id)
    db = _open_db(db_url)
    detail = _storage_call(lead_detail, db, number)
    console = make_console()
    _header(console, detail)
    console.print(_identifiers_table(detail))
    _findings(console, detail)
    console.print(_evidence_table(detail))
    console.print(_history_table(detail))


@lead.command("merge", cls=OneLineErrors)
@click.argument("first", metavar="A")
@click.argument("second", metavar="B")
@_by_option
@_reason_option
@_db_option
def lead_merge(first: str, second: str, by: str | None, reason: str, db_url: str | None) -> None:
    """Merge leads A and B into one (the older id is kept)."""
    from storage.grouping import merge_leads

    a, b = _lead_id(first), _lead_id(second)
    actor = _require_by(by)
    db = _open_db(db_url)
    kept, gone = _storage_call(merge_leads, db, a, b, actor, reason)
    make_console().print(plain(f"已将线索 {gone} 并入线索 {kept}（操作人：{actor}）。"))


@lead.command("split", cls=OneLineErrors)
@click.argument("lead_id", metavar="ID")
@click.option("--page", "url", metavar="URL", help="The page whose findings move to a new lead (required).")
@_by_option
@_reason_option
@_db_option
def lead_split(lead_id: str, url: str | None, by: str | None, reason: str, db_url: str | None) -> None:
    """Move one page's findings out of a lead into a new lead."""
    from storage.grouping import split_page

    number = _lead_id(lead_id)
    if not url:
        raise LeadCliError("缺少 --page：请给出要拆分出去的网页网址", EXIT_USAGE)
    actor = _require_by(by)
    db = _open_db(db_url)
    new_id = _storage_call(split_page, db, number, url, actor, reason)
    make_console().print(plain(f"已把网页 {url} 从线索 {number} 拆分为新线索 {new_id}（操作人：{actor}）。"))


@click.command(cls=OneLineErrors)
@click.argument("lead_id", metavar="ID")
@click.option("--start", "actions", flag_value="start", multiple=True, help="Start reviewing (new/reopened → reviewing).")
@click.option("--confirm", "actions", flag_value="confirm", multiple=True, help="Confirm (reviewing/reopened → confirmed).")
@click.option("--dismiss", "actions", flag_value="dismiss", multiple=True, help="Dismiss (reviewing/reopened → dismissed).")
@click.option("--close", "actions", flag_value="close", multiple=True, help="Close the case (referred → closed).")
@click.option("--note", metavar="TEXT", help="Add a note; the state does not change.")
@_by_option
@_reason_option
@_db_option
def review(lead_id: str, actions: tuple[str, ...], note: str | None, by: str | None, reason: str,
           db_url: str | None) -> None:
    """Review a lead: exactly one of --start, --confirm, --dismiss, --close, --note."""
    from storage.workflow import review as apply_review

    number = _lead_id(lead_id)
    chosen = list(dict.fromkeys(actions)) + (["note"] if note is not None else [])
    if len(chosen) != 1:
        raise LeadCliError("请恰好指定一个操作：--start、--confirm、--dismiss、--close 或 --note", EXIT_USAGE)
    action = chosen[0]
    actor = _require_by(by)
    text = note if action == "note" else reason
    if action == "note" and reason:
        text = f"{note}（{reason}）"
    db = _open_db(db_url)
    before, after = _storage_call(apply_review, db, number, action, actor, text or "")
    console = make_console()
    if action == "note":
        console.print(plain(f"已为线索 {number} 添加备注（操作人：{actor}）。"))
    else:
        console.print(plain(f"线索 {number}：{_status(before)} → {_status(after)}（操作人：{actor}）。"))
