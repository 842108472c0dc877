"""Hostile text on the inspector's screens, through the real ``xunjian`` CLI in a subprocess.

Page titles, excerpts, URLs, run records and typed names carrying rich markup (``[/bold]close`` used to
crash ``leads``, ``daily`` and ``lead show`` with a MarkupError; ``[link=…]`` made a clickable link) and
terminal escape sequences must be shown as literal text, never parsed or passed to the terminal raw.
Control characters are shown as their Control Pictures (ESC as ␛), so ``\\x1b[31m`` reads ``␛[31m``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from storage.db import Database
from storage.records import FindingRecord
from storage.repository import finish_run, list_leads, start_run, store_batch
from tests.conftest import CliResult, run_cli
from tests.test_grouping import db, page  # noqa: F401 - db is a fixture

CLOSE = "[/bold]close"
LINK = "[link=http://127.0.0.1/x]点我[/link]"
RED = "[red]红[/red]"
ESC = "\x1b[31m"
SHOWN_ESC = "␛[31m"
# A raw OSC 8 terminal hyperlink, as a page could carry it in its text.
OSC_LINK = "\x1b]8;;http://127.0.0.1/x\x1b\\点我\x1b]8;;\x1b\\"
SHOWN_OSC_LINK = "␛]8;;http://127.0.0.1/x␛\\点我␛]8;;␛\\"
URL_A = f"http://h/a{LINK}"  # short enough for the 48-column URL cell of the lead list
URL_B = "http://h/b"
COLOUR = {"FORCE_COLOR": "1", "NO_COLOR": ""}


@pytest.fixture
def hostile(db: Database) -> dict:
    """Two leads named by hostile titles (no name identifier, so the title is the name), one finding
    whose matched text, explanation and basis are hostile, and a crawl run with hostile fields."""
    body = f"{CLOSE} {OSC_LINK} 初二数学 电话 13800138000 {RED}"
    finding = FindingRecord(category="exaggerated_marketing", subcategory="guarantee", rule="EM1.[/]",
                            severity=4, start=0, end=len(CLOSE), text=CLOSE, normalized=CLOSE,
                            explanation=f"承诺 {LINK}", basis=f"{RED}{ESC}")
    store_batch(db, None, [page(URL_A, body, title=CLOSE, findings=[finding]),
                           page(URL_B, f"{ESC}初三物理 电话 13900001111", title=f"{RED}{ESC}")])
    leads = {view.urls[0]: view.id for view in list_leads(db, all=True)}
    run = start_run(db, CLOSE, "site", {})
    finish_run(db, run, LINK, {f"xunjian/errors/{RED}": 2}, pages=3, errors=2, new_findings=1, new_leads=1)
    return {"db": db, "url": db.url, "a": str(leads[URL_A]), "b": str(leads[URL_B])}


def cli(hostile: dict, *args: str, env: dict | None = None) -> CliResult:
    return run_cli(*args, "--db", hostile["url"], env=env)


def shown(result: CliResult, *texts: str) -> str:
    """The output of a command that succeeded, showing every text literally and no escape sequence."""
    assert result.code == 0, (result.code, result.out, result.err)
    for text in texts:
        assert text in result.out, (text, result.out)
    assert "\x1b" not in result.out + result.err  # without colour, any ESC would come from the data
    return result.out


def test_lead_lists_show_hostile_titles_as_text(hostile: dict) -> None:
    for args in (("leads", "--all"), ("leads", "--date", "2026-03-02"), ("daily", "--date", "2026-03-02")):
        shown(cli(hostile, *args), CLOSE, URL_A, f"{RED}{SHOWN_ESC}")


def test_lead_show_renders_every_crawled_field_as_text(hostile: dict) -> None:
    out = shown(cli(hostile, "lead", "show", hostile["a"]), f"线索 {hostile['a']}：{CLOSE}", "规则 EM1.[/]",
                URL_A, f"说明：承诺 {LINK}　依据：{RED}{SHOWN_ESC}")
    assert f"…{CLOSE} {SHOWN_OSC_LINK} 初二" in out  # the matched text inside its context
    shown(cli(hostile, "lead", "show", hostile["b"]), f"{RED}{SHOWN_ESC}", f"{SHOWN_ESC}初三物理")


def test_styles_of_the_code_still_apply_and_data_makes_no_link(hostile: dict) -> None:
    result = cli(hostile, "lead", "show", hostile["a"], env=COLOUR)
    assert result.code == 0, result.err
    out = result.out
    assert "\x1b[1m" in out and "\x1b[1;7;31m" in out  # bold headings; the match in bold red reverse
    assert CLOSE in out and LINK in out and SHOWN_OSC_LINK in out
    assert "\x1b]" not in out  # no OSC sequence at all: neither a [link=…] nor the page's own hyperlink
    listed = cli(hostile, "leads", "--all", env=COLOUR)
    assert listed.code == 0 and re.search(r"\x1b\[31m *4 *\x1b\[0m", listed.out)  # severity 4 still red
    assert CLOSE in listed.out and "\x1b]" not in listed.out


def test_review_by_markup_is_recorded_and_shown(hostile: dict) -> None:
    lead = hostile["a"]
    started = cli(hostile, "review", lead, "--start", "--by", "[/]", "--reason", LINK)
    shown(started, f"线索 {lead}：新线索 → 核查中（操作人：[/]）")
    shown(cli(hostile, "review", lead, "--note", CLOSE + ESC, "--by", "[bold]"), "（操作人：[bold]）")
    history = shown(cli(hostile, "lead", "show", lead), "[/]", "[bold]", LINK, CLOSE + SHOWN_ESC)
    assert history.count("[/]") >= 2  # the rule name and the reviewer
    moved = cli(hostile, "lead", "split", lead, "--page", URL_A + ESC, "--by", "[/]")
    assert moved.code == 1 and moved.err.strip() == f"错误：数据库中没有网页 {URL_A}{SHOWN_ESC}", moved.err


def test_runs_and_status_show_hostile_run_records_as_text(hostile: dict, tmp_path: Path) -> None:
    shown(cli(hostile, "runs"), CLOSE, LINK, f"{RED} 2")
    shown(cli(hostile, "runs", "--source", "[/]"), "没有来源 [/] 的抓取记录。")
    sources = tmp_path / "sources.toml"
    sources.write_text('[[source]]\nname = "hostile"\nkind = "site"\nstart_urls = ["https://a.example/"]\n',
                       encoding="utf-8")
    db = hostile["db"]
    finish_run(db, start_run(db, "hostile", "site", {}), CLOSE + ESC, {}, pages=0, errors=1, new_findings=0,
               new_leads=0)
    args = ("status", "--sources", str(sources), "--data-dir", str(tmp_path))
    shown(cli(hostile, *args), f"上次抓取失败：{CLOSE}{SHOWN_ESC}")
    coloured = cli(hostile, *args, env=COLOUR)
    assert coloured.code == 0 and "\x1b[1;31m异常\x1b[0m" in coloured.out  # the health label keeps its style


def test_detect_table_shows_hostile_input_as_text(tmp_path: Path) -> None:
    lines = tmp_path / "docs.jsonl"
    lines.write_text('{"id": "[/bold]x", "text": "初二数学补习 保过 [/] \\u001b[31m红 [link=http://a]y[/link]"}\n',
                     encoding="utf-8")
    result = run_cli("detect", "--format", "table", str(lines))
    shown(result, "[/bold]x", f"[/] {SHOWN_ESC}红 [link=http://a]y")
