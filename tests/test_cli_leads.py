"""The lead commands through the real ``xunjian`` CLI in a subprocess: output, exit codes, one-line errors.

SQLite always; PostgreSQL too when XUNJIAN_TEST_PG_URL is set.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from storage.db import Database
from storage.records import FindingRecord
from storage.repository import list_leads, store_batch
from tests.conftest import CliResult, run_cli
from tests.test_grouping import T0, db, page  # noqa: F401 - db is a fixture

A1, A2, B1 = "https://a.example/1", "https://a.example/2", "https://b.example/1"


def one_error(result: CliResult, code: int) -> str:
    assert result.code == code, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("错误："), result.err
    return lines[0]


def exaggeration() -> FindingRecord:
    return FindingRecord(category="exaggerated_marketing", subcategory="guarantee", rule="EM1.guarantee",
                         severity=4, start=5, end=7, text="保过", normalized="保过",
                         explanation="承诺考试通过", basis="广告法第二十四条")


@pytest.fixture
def stored(db: Database) -> dict:
    store_batch(db, None, [
        page(A1, "初二数学 电话 138 0013 8000 微信：Huizhi_Jiaoyu", title="慧智教育 - 首页"),
        page(A2, "初三物理 电话 13800138000", fetched_at=T0 + timedelta(hours=1)),
        page(B1, "考研政治 保过 电话 13900001111", findings=[exaggeration()]),
    ])
    leads = {url: view.id for view in list_leads(db, all=True) for url in view.urls}
    return {"url": db.url, "a": leads[A1], "b": leads[B1]}


def cli(stored: dict, *args: str) -> CliResult:
    return run_cli(*args, "--db", stored["url"])


def test_daily_list_with_counts(stored: dict) -> None:
    result = cli(stored, "daily", "--date", "2026-03-02")
    assert result.code == 0, result.err
    assert "2026-03-02 巡查日报" in result.out
    assert "按违规类型：违规学科类培训广告 1 条，夸大虚假宣传 1 条" in result.out
    assert "按处理状态：新线索 2 条" in result.out
    table = result.out[result.out.index("线索列表"):]
    assert table.index(B1) < table.index("慧智教育")  # severity 4 before severity 3
    empty = cli(stored, "daily", "--date", "2026-03-09")
    assert empty.code == 0 and "当天没有新证据的线索" in empty.out
    assert "YYYY-MM-DD" in one_error(cli(stored, "daily", "--date", "2026-13-01"), 2)


def test_lead_show(stored: dict) -> None:
    result = cli(stored, "lead", "show", str(stored["a"]))
    assert result.code == 0, result.err
    out = result.out
    assert f"线索 {stored['a']}：慧智教育" in out and "网页 2 个" in out
    for text in ("电话", "13800138000", "138 0013 8000", "微信", "huizhi_jiaoyu", "机构名称", "慧智"):
        assert text in out, text
    assert "违规发现（2 条）" in out and "初二数学" in out
    assert "证据（网页快照）" in out and A1 in out and A2 in out
    assert "审计记录" in out and "新建" in out and "system" in out
    assert "找不到编号为 999 的线索" in one_error(cli(stored, "lead", "show", "999"), 1)
    assert "正整数" in one_error(cli(stored, "lead", "show", "abc"), 2)


def test_review_transitions_and_refusals(stored: dict) -> None:
    lead = str(stored["a"])
    started = cli(stored, "review", lead, "--start", "--by", "张三", "--reason", "开始核查")
    assert started.code == 0, started.err
    assert f"线索 {lead}：新线索 → 核查中（操作人：张三）" in started.out
    refused = one_error(cli(stored, "review", lead, "--close", "--by", "张三"), 1)
    assert f"线索 {lead} 当前状态为“核查中”" in refused and "当前允许：确认、排除" in refused
    noted = cli(stored, "review", lead, "--note", "已电话核实", "--by", "张三")
    assert noted.code == 0 and "已为线索" in noted.out
    confirmed = cli(stored, "review", lead, "--confirm", "--by", "张三")
    assert confirmed.code == 0 and "核查中 → 已确认" in confirmed.out
    shown = cli(stored, "lead", "show", lead).out
    assert "已电话核实" in shown and "张三" in shown and "已确认" in shown
    assert "--by" in one_error(cli(stored, "review", lead, "--dismiss"), 2)
    assert "恰好指定一个操作" in one_error(cli(stored, "review", lead, "--start", "--close", "--by", "张三"), 2)
    assert "恰好指定一个操作" in one_error(cli(stored, "review", lead, "--by", "张三"), 2)
    assert "找不到编号为 999 的线索" in one_error(cli(stored, "review", "999", "--start", "--by", "张三"), 1)
    one_error(cli(stored, "review", lead, "--start", "--by", "张三", "--bogus"), 2)


def test_merge_and_split(stored: dict) -> None:
    a, b = str(stored["a"]), str(stored["b"])
    assert "--by" in one_error(cli(stored, "lead", "merge", a, b), 2)
    merged = cli(stored, "lead", "merge", b, a, "--by", "张三", "--reason", "同一老板")
    assert merged.code == 0, merged.err
    assert f"已将线索 {max(int(a), int(b))} 并入线索 {min(int(a), int(b))}" in merged.out
    assert "已并入线索" in one_error(cli(stored, "review", str(max(int(a), int(b))), "--start", "--by", "张三"), 1)
    kept = str(min(int(a), int(b)))
    split = cli(stored, "lead", "split", kept, "--page", B1, "--by", "张三", "--reason", "不是同一家")
    assert split.code == 0, split.err
    assert f"已把网页 {B1} 从线索 {kept} 拆分为新线索" in split.out
    assert "--page" in one_error(cli(stored, "lead", "split", kept, "--by", "张三"), 2)
    assert "数据库中没有网页" in one_error(
        cli(stored, "lead", "split", kept, "--page", "https://nowhere.example/", "--by", "张三"), 1)
    rows = json.loads(cli(stored, "leads", "--all", "--format", "json").out)
    assert sorted(len(row["urls"]) for row in rows) == [1, 2]
    for row in rows:
        assert {"id", "name", "categories", "severity", "score", "status", "urls", "first_seen", "last_seen"} <= set(row)


def test_help_is_english() -> None:
    for args in (("daily", "--help"), ("lead", "--help"), ("review", "--help"), ("lead", "split", "--help")):
        result = run_cli(*args)
        assert result.code == 0 and "Usage:" in result.out, args
