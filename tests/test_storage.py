"""Storage test fixtures and helpers, plus lead listing and identifier extraction.

SQLite always; PostgreSQL too when XUNJIAN_TEST_PG_URL is set (for example
postgresql+psycopg://user:pw@127.0.0.1:5432/xunjian_test). Each PostgreSQL
test works in a throwaway schema that it drops afterwards.

The ``db_url``/``db`` fixtures and the ``page``/``finding``/``counts``/``leads_by_key`` helpers
here are shared with tests/test_storage_db.py (opening and migrating databases) and
tests/test_storage_batch.py (store_batch and crawl runs).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage.db import Database, open_database
from storage.errors import StorageError
from storage.identifiers import Identifiers, extract_identifiers, lead_key
from storage.models import Finding, Lead, Page, Snapshot, Source
from storage.records import FindingRecord, PageRecord
from storage.repository import list_leads, store_batch
from tests.conftest import pg_schema_url

PG_URL = os.environ.get("XUNJIAN_TEST_PG_URL")
SHANGHAI = timezone(timedelta(hours=8))
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)  # 10:00 on 2 March in Shanghai


# ---------------------------------------------------------------- fixtures
# The functions carry a ``_fixture`` suffix so that the sibling test modules can import them without
# the imported name clashing with the ``db``/``db_url`` test parameters.


@pytest.fixture(
    name="db_url",
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(not PG_URL, reason="XUNJIAN_TEST_PG_URL 未设置"),
        ),
    ]
)
def db_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'xunjian.db'}"
        return
    with pg_schema_url("xunjian_test") as url:
        yield url


@pytest.fixture(name="db")
def db_fixture(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    yield database
    database.dispose()


# ---------------------------------------------------------------- helpers


def finding(category: str = "banned_ad", rule: str = "ban.grade", severity: int = 3,
            start: int = 0, end: int = 4, text: str = "小升初") -> FindingRecord:
    return FindingRecord(
        category=category, subcategory="grade", rule=rule, severity=severity, start=start,
        end=end, text=text, normalized=text, explanation="面向义务教育阶段学生的学科类培训广告",
        basis="《校外培训广告管理》", 
    )


def page(url: str, body: str, *, fetched_at: datetime = T0, findings: list[FindingRecord] | None = None,
         title: str = "暑期班招生", score: float = 0.8, fields: dict[str, list[str]] | None = None,
         source: str = "demo") -> PageRecord:
    return PageRecord(
        source=source, url=url, requested_url=url + "?from=list", final_url=url,
        fetched_at=fetched_at, status=200, headers={"Content-Type": "text/html; charset=utf-8"},
        encoding="utf-8", title=title, text=body, fields=fields or {},
        image_urls=[url + "/poster.png"], content_hash=hashlib.sha256(body.encode()).hexdigest(),
        categories=sorted({f.category for f in findings or []}), score=score, rules_version="r1",
        findings=list(findings or []),
    )


def counts(db: Database) -> dict[str, int]:
    with db.session() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model))
            for model in (Source, Page, Snapshot, Finding, Lead)
        }


def leads_by_key(db: Database) -> dict[str, Lead]:
    with db.session() as session:
        return {lead.key: lead for lead in session.scalars(select(Lead))}


# ---------------------------------------------------------------- list_leads


def test_list_leads_filters_by_day_in_timezone_and_orders(db: Database) -> None:
    late_evening_utc = datetime(2026, 3, 1, 17, 30, tzinfo=timezone.utc)  # 3月2日 01:30 上海
    store_batch(db, None, [
        page("https://a.example/low", "小升初 13800000001", score=0.3,
             findings=[finding(severity=2)], fetched_at=late_evening_utc),
        page("https://a.example/high", "小升初 13800000002", score=0.1,
             findings=[finding(severity=4)], fetched_at=T0),
        page("https://a.example/mid-a", "小升初 13800000003", score=0.9,
             findings=[finding(severity=3)], fetched_at=T0),
        page("https://a.example/mid-b", "小升初 13800000004", score=0.9,
             findings=[finding(severity=3)], fetched_at=T0 + timedelta(hours=1)),
        page("https://a.example/old", "小升初 13800000005", score=1.0,
             findings=[finding(severity=5)], fetched_at=T0 - timedelta(days=2)),
    ])
    keys = [view.key for view in list_leads(db, day=date(2026, 3, 2))]
    assert keys == ["phone:13800000002", "phone:13800000004", "phone:13800000003",
                    "phone:13800000001"]
    assert [v.key for v in list_leads(db, day=date(2026, 3, 1), tz="UTC")] == ["phone:13800000001"]
    assert list_leads(db, day=date(2026, 3, 1)) == []
    everything = list_leads(db, all=True)
    assert [v.key for v in everything][0] == "phone:13800000005" and len(everything) == 5
    assert everything[0].last_seen.tzinfo is not None


def test_list_leads_counts_a_lead_seen_again_on_a_later_day(db: Database) -> None:
    record = page("https://a.example/1", "小升初 13800138000", findings=[finding()])
    store_batch(db, None, [record])
    assert list_leads(db, day=date(2026, 3, 5)) == []
    store_batch(db, None, [page(record.url, record.text, findings=record.findings,
                                fetched_at=T0 + timedelta(days=3))])
    [view] = list_leads(db, day=date(2026, 3, 5))
    assert view.first_seen == T0 and view.finding_count == 1


def test_list_leads_defaults_to_today(db: Database) -> None:
    now = datetime.now(timezone.utc)
    store_batch(db, None, [
        page("https://a.example/today", "小升初 13800000009", findings=[finding()], fetched_at=now),
        page("https://a.example/past", "小升初 13800000008", findings=[finding()],
             fetched_at=now - timedelta(days=3)),
    ])
    assert [v.key for v in list_leads(db)] == ["phone:13800000009"]


def test_list_leads_rejects_unknown_timezone(db: Database) -> None:
    with pytest.raises(StorageError, match="未知时区 'Mars/Olympus'"):
        list_leads(db, tz="Mars/Olympus")


# ---------------------------------------------------------------- identifiers


@pytest.mark.parametrize(
    ("text", "phones", "wechat"),
    [
        ("咨询电话：138 0013 8000", ["13800138000"], []),
        ("咨询电话：138-0013-8000", ["13800138000"], []),
        ("咨询电话：１３８００１３８０００", ["13800138000"], []),
        ("电话 +86 139-0000-1111", ["13900001111"], []),
        ("座机 010-12345678 或 (0571)88886666", ["010-12345678", "0571-88886666"], []),
        ("座机 02112345678", ["021-12345678"], []),
        ("已成交 138****1111 家长好评", [], []),
        ("投诉请拨 12315 或 12345", [], []),
        ("客服 400-123-4567，银行 95588", [], []),
        ("订单 20241380013800012", [], []),
        ("微信号：Teacher_Li2024 欢迎咨询", [], ["teacher_li2024"]),
        ("加V: abc-123456", [], ["abc-123456"]),
        ("vx：zhangsan88 / wx abcdef", [], ["zhangsan88", "abcdef"]),
        ("微信 13800138000", ["13800138000"], []),
        ("wx:ab12 太短", [], []),
    ],
)
def test_extract_phones_and_wechat(text: str, phones: list[str], wechat: list[str]) -> None:
    ids = extract_identifiers(text, {})
    assert (ids.phones, ids.wechat) == (phones, wechat)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("北京学而思教育科技有限公司主办", ["北京学而思教育科技有限公司"]),
        ("欢迎来到阳光培训学校", ["阳光培训学校"]),
        ("启航数学工作室 和 海淀英才培训中心", ["启航数学工作室", "海淀英才培训中心"]),
        ("帮孩子考上理想学校", []),
        ("学校", []),
    ],
)
def test_extract_institution_names(text: str, names: list[str]) -> None:
    assert extract_identifiers(text, {}).names == names


def test_fields_come_first_and_count_by_name() -> None:
    ids = extract_identifiers(
        "另有电话 13900001111",
        {"phone": ["138 0013 8000"], "wechat": ["Tutor_Wang"], "institution": ["英才补习社"]},
    )
    assert ids.phones == ["13800138000", "13900001111"]
    assert ids.wechat == ["tutor_wang"]
    assert ids.names == ["英才补习社"]


def test_lead_key_preference() -> None:
    url = "https://a.example/p"
    assert lead_key(Identifiers(["13800138000"], ["abcdef"], ["阳光培训学校"]), url) == "phone:13800138000"
    assert lead_key(Identifiers([], ["abcdef"], ["阳光培训学校"]), url) == "wechat:abcdef"
    assert lead_key(Identifiers([], [], ["阳光 培训学校"]), url) == "name:阳光培训学校"
    assert lead_key(Identifiers(), url) == "url:https://a.example/p"
