"""Storage layer against real databases.

SQLite always; PostgreSQL too when XUNJIAN_TEST_PG_URL is set (for example
postgresql+psycopg://user:pw@127.0.0.1:5432/xunjian_test). Each PostgreSQL
test works in a throwaway schema that it drops afterwards.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select, text

from storage.db import (
    DEFAULT_DB_URL,
    Database,
    alembic_config,
    current_revision,
    head_revision,
    open_database,
    resolve_db_url,
    upgrade,
)
from storage.errors import DatabaseUnavailable, StorageError
from storage.identifiers import Identifiers, extract_identifiers, lead_key
from storage.models import Base, CrawlRun, Finding, Lead, Page, Snapshot, Source
from storage.records import BatchResult, FindingRecord, PageRecord
from storage.repository import (
    finish_run,
    list_leads,
    run_summary,
    start_run,
    store_batch,
)

PG_URL = os.environ.get("XUNJIAN_TEST_PG_URL")
SHANGHAI = timezone(timedelta(hours=8))
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)  # 10:00 on 2 March in Shanghai
TABLES = {"sources", "crawl_runs", "pages", "snapshots", "findings", "leads"}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(not PG_URL, reason="XUNJIAN_TEST_PG_URL 未设置"),
        ),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'xunjian.db'}"
        return
    from sqlalchemy.engine import make_url

    schema = f"xunjian_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
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


# ---------------------------------------------------------------- opening and migrating


def test_open_database_creates_directory_schema_and_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "x.db"
    database = open_database(f"sqlite:///{path}")
    try:
        assert path.is_file()
        assert database.path == path
        assert TABLES <= set(inspect(database.engine).get_table_names())
        with database.engine.connect() as connection:
            pragmas = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
        assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000,
                           "synchronous": 1}
    finally:
        database.dispose()
    assert current_revision(f"sqlite:///{path}") == head_revision()


def test_open_without_upgrade_leaves_schema_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bare.db'}"
    database = open_database(url, upgrade=False)
    try:
        assert set(inspect(database.engine).get_table_names()) == set()
    finally:
        database.dispose()
    assert current_revision(url) is None
    assert upgrade(url) == head_revision()
    assert current_revision(url) == head_revision()


def test_migration_matches_models_and_downgrades(db: Database) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, Base.metadata)
        # APScheduler creates and owns its job table (crawler.scheduler); it is not part of the models.
        assert [d for d in diffs if not (d[0] == "remove_table" and d[1].name == "apscheduler_jobs")] == []
    with db.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert not TABLES & set(inspect(db.engine).get_table_names())
    assert current_revision(db.url) is None
    assert upgrade(db.url) == head_revision()
    assert TABLES <= set(inspect(db.engine).get_table_names())


def test_upgrade_twice_is_harmless(db: Database) -> None:
    store_batch(db, None, [page("https://a.example/1", "小升初 冲刺")])
    assert upgrade(db.url) == head_revision()
    assert counts(db)["pages"] == 1


def test_parent_is_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    url = f"sqlite:///{blocker / 'sub' / 'x.db'}"
    with pytest.raises(DatabaseUnavailable) as caught:
        open_database(url)
    message = str(caught.value)
    assert str(blocker) in message and "不是目录" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("url", "named"),
    [
        # Root ignores permission bits, so use kernel file systems nobody can create files in.
        ("sqlite:////proc/xunjian-test/x.db", "/proc/xunjian-test"),
        ("sqlite:////sys/xunjian-test.db", "/sys"),
    ],
)
def test_unwritable_directory(url: str, named: str) -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        open_database(url)
    message = str(caught.value)
    assert message.startswith(f"无法打开数据库 {url}：")
    assert named in message
    assert "\n" not in message


def test_database_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable, match=f"{tmp_path} 已存在但不是文件"):
        open_database(f"sqlite:///{tmp_path}")


def test_unreachable_server_masks_password() -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        open_database("postgresql+psycopg://inspector:hunter2@127.0.0.1:1/xunjian")
    message = str(caught.value)
    assert "127.0.0.1:1/xunjian" in message
    assert "hunter2" not in message and "***" in message
    assert "\n" not in message


def test_bad_url_is_reported() -> None:
    with pytest.raises(DatabaseUnavailable, match="无法解析数据库地址 not a url"):
        open_database("not a url")


def test_resolve_db_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XUNJIAN_DB_URL", raising=False)
    assert resolve_db_url(None) == DEFAULT_DB_URL == "sqlite:///./data/xunjian.db"
    monkeypatch.setenv("XUNJIAN_DB_URL", "sqlite:///env.db")
    assert resolve_db_url(None) == "sqlite:///env.db"
    assert resolve_db_url("sqlite:///cli.db") == "sqlite:///cli.db"


# ---------------------------------------------------------------- store_batch


def test_store_batch_inserts_everything(db: Database) -> None:
    records = [
        page("https://a.example/1", "小升初冲刺班 电话 13800138000",
             findings=[finding(), finding(rule="ban.holiday", start=5, end=8, severity=2)]),
        page("https://a.example/2", "一对一 保过 微信号：teacher_wang88",
             findings=[finding("exaggerated_marketing", "exag.guarantee", 2, 4, 6, "保过")]),
        page("https://a.example/3", "普通新闻"),
    ]
    result = store_batch(db, None, records)
    assert result == BatchResult(pages=3, new_pages=3, new_snapshots=3, new_findings=3, new_leads=2)
    assert counts(db) == {"sources": 1, "pages": 3, "snapshots": 3, "findings": 3, "leads": 2}
    leads = leads_by_key(db)
    assert set(leads) == {"phone:13800138000", "wechat:teacher_wang88"}
    assert leads["phone:13800138000"].severity == 3
    assert leads["phone:13800138000"].status == "new"
    assert leads["phone:13800138000"].first_seen == T0
    with db.session() as session:
        stored = session.scalars(select(Page).where(Page.url == "https://a.example/1")).one()
        snapshot = session.get(Snapshot, stored.last_snapshot_id)
        assert snapshot is not None and snapshot.page_id == stored.id
        assert snapshot.fetched_at == T0 and snapshot.fetched_at.tzinfo is not None
        assert snapshot.headers == {"Content-Type": "text/html; charset=utf-8"}
        assert snapshot.image_urls == ["https://a.example/1/poster.png"]
        assert stored.requested_url == "https://a.example/1?from=list"
        spans = sorted((f.rule, f.start, f.end) for f in session.scalars(
            select(Finding).where(Finding.snapshot_id == snapshot.id)))
        assert spans == [("ban.grade", 0, 4), ("ban.holiday", 5, 8)]


def test_storing_the_same_batch_twice_changes_no_counts(db: Database) -> None:
    records = [
        page("https://a.example/1", "小升初 13800138000", findings=[finding()]),
        page("https://a.example/2", "没有问题的页面"),
    ]
    store_batch(db, None, records)
    before = counts(db)
    later = [page(r.url, r.text, fetched_at=T0 + timedelta(hours=5), findings=r.findings)
             for r in records]
    again = store_batch(db, None, later)
    assert again == BatchResult(pages=2)
    assert counts(db) == before
    lead = leads_by_key(db)["phone:13800138000"]
    assert lead.first_seen == T0 and lead.last_seen == T0 + timedelta(hours=5)
    with db.session() as session:
        stored = session.scalars(select(Page).where(Page.url == "https://a.example/1")).one()
        assert stored.first_seen == T0 and stored.last_seen == T0 + timedelta(hours=5)


def test_duplicate_urls_and_findings_within_one_batch(db: Database) -> None:
    record = page("https://a.example/1", "小升初 13800138000", findings=[finding(), finding()])
    result = store_batch(db, None, [record, record])
    assert result == BatchResult(pages=2, new_pages=1, new_snapshots=1, new_findings=1, new_leads=1)


def test_changed_content_adds_snapshot_to_same_page(db: Database) -> None:
    url = "https://a.example/1"
    store_batch(db, None, [page(url, "版本一 小升初", findings=[finding()])])
    result = store_batch(db, None, [
        page(url, "版本二 小升初 寒假班", fetched_at=T0 + timedelta(days=1),
             findings=[finding(), finding(rule="ban.holiday", start=7, end=10)]),
    ])
    assert result == BatchResult(pages=1, new_pages=0, new_snapshots=1, new_findings=2, new_leads=0)
    assert counts(db)["pages"] == 1 and counts(db)["snapshots"] == 2
    with db.session() as session:
        stored = session.scalars(select(Page)).one()
        latest = session.get(Snapshot, stored.last_snapshot_id)
        assert latest is not None and latest.text.startswith("版本二")
    # Reverting to the first version points the page back at that snapshot.
    store_batch(db, None, [page(url, "版本一 小升初", fetched_at=T0 + timedelta(days=2),
                                findings=[finding()])])
    assert counts(db)["snapshots"] == 2
    with db.session() as session:
        stored = session.scalars(select(Page)).one()
        latest = session.get(Snapshot, stored.last_snapshot_id)
        assert latest is not None and latest.text == "版本一 小升初"


def test_two_pages_with_same_phone_share_one_lead(db: Database) -> None:
    store_batch(db, None, [
        page("https://b.example/x", "阳光培训学校 小升初 电话 138-0013-8000", score=0.5,
             findings=[finding(severity=2)], title="阳光"),
    ])
    store_batch(db, None, [
        page("https://c.example/y", "保过班 联系１３８ ００１３ ８０００", score=0.9,
             fetched_at=T0 - timedelta(days=3),
             findings=[finding("exaggerated_marketing", "exag.guarantee", 4, 0, 3, "保过班")]),
    ])
    assert counts(db)["leads"] == 1
    lead = leads_by_key(db)["phone:13800138000"]
    assert lead.name == "阳光培训学校"
    assert lead.categories == ["banned_ad", "exaggerated_marketing"]
    assert (lead.severity, lead.score) == (4, 0.9)
    assert lead.first_seen == T0 - timedelta(days=3) and lead.last_seen == T0
    [view] = list_leads(db, all=True)
    assert view.urls == ["https://b.example/x", "https://c.example/y"]
    assert view.finding_count == 2


def test_minor_training_ad_only_page_makes_no_lead(db: Database) -> None:
    result = store_batch(db, None, [
        page("https://d.example/art", "少儿美术 电话 13900001111",
             findings=[finding("minor_training_ad", "minor.art", 1, 0, 4, "少儿美术")]),
    ])
    assert result.new_findings == 1 and result.new_leads == 0
    assert counts(db)["leads"] == 0
    with db.session() as session:
        assert session.scalars(select(Finding.lead_id)).all() == [None]


def test_lead_categories_can_be_overridden(db: Database) -> None:
    result = store_batch(db, None, [
        page("https://d.example/art", "少儿美术 电话 13900001111",
             findings=[finding("minor_training_ad", "minor.art", 1, 0, 4, "少儿美术")]),
    ], lead_categories={"minor_training_ad"})
    assert result.new_leads == 1
    assert set(leads_by_key(db)) == {"phone:13900001111"}


def test_lead_without_identifiers_is_keyed_by_url_and_titled(db: Database) -> None:
    store_batch(db, None, [page("https://e.example/p", "小升初 冲刺", title="名师冲刺",
                                findings=[finding()])])
    lead = leads_by_key(db)["url:https://e.example/p"]
    assert lead.name == "名师冲刺"


def test_long_url_gets_a_digest_lead_key(db: Database) -> None:
    url = "https://e.example/search?q=" + "x" * 1500
    store_batch(db, None, [page(url, "小升初 冲刺", findings=[finding()])])
    [key] = leads_by_key(db)
    assert key == "url-sha256:" + hashlib.sha256(url.encode()).hexdigest()
    [view] = list_leads(db, all=True)
    assert view.urls == [url]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"url": "https://a.example/" + "y" * 2100}, "url 长度为 2118"),
        ({"content_hash": "abc"}, "content_hash 不是 64 位十六进制 SHA-256"),
    ],
)
def test_invalid_records_are_rejected_before_writing(
    db: Database, change: dict[str, str], expected: str
) -> None:
    good = page("https://a.example/ok", "小升初", findings=[finding()])
    bad = page("https://a.example/bad", "文本")
    for name, value in change.items():
        setattr(bad, name, value)
    with pytest.raises(StorageError, match=expected):
        store_batch(db, None, [good, bad])
    assert counts(db)["pages"] == 0


def test_database_error_names_the_page(db: Database) -> None:
    bad = page("https://a.example/untitled", "文本")
    bad.title = None  # type: ignore[assignment]  # a crawler bug the NOT NULL column catches
    with pytest.raises(StorageError, match="保存页面 https://a.example/untitled 到数据库"):
        store_batch(db, None, [page("https://a.example/ok", "正常"), bad])
    assert counts(db)["pages"] == 0


def test_naive_fetch_time_is_rejected(db: Database) -> None:
    record = page("https://a.example/naive", "文本", fetched_at=datetime(2026, 3, 2, 10, 0))
    with pytest.raises(StorageError, match="https://a.example/naive.*缺少时区"):
        store_batch(db, None, [record])
    assert counts(db)["pages"] == 0


def test_runs_record_start_finish_and_batch_counters(db: Database) -> None:
    run_id = start_run(db, "demo", "demo_site", {"start_urls": ["http://127.0.0.1/"]})
    store_batch(db, run_id, [page("https://a.example/1", "小升初 13800138000",
                                  findings=[finding()])])
    partial = run_summary(db, run_id)
    assert (partial["pages"], partial["new_findings"], partial["new_leads"]) == (1, 1, 1)
    assert partial["finished_at"] is None and partial["source"] == "demo"
    finish_run(db, run_id, "finished", {"downloader/request_count": 3}, pages=3, errors=1,
               new_findings=1, new_leads=1)
    summary = run_summary(db, run_id)
    assert summary["finish_reason"] == "finished"
    assert (summary["pages"], summary["errors"]) == (3, 1)
    assert summary["stats"] == {"downloader/request_count": 3}
    assert summary["finished_at"] >= summary["started_at"]
    # Re-registering the source updates its config instead of duplicating it.
    start_run(db, "demo", "demo_site", {"start_urls": []})
    with db.session() as session:
        [source] = session.scalars(select(Source)).all()
        assert source.config == {"start_urls": []}
        assert session.scalar(select(func.count()).select_from(CrawlRun)) == 2
    with pytest.raises(StorageError, match="找不到编号为 999 的抓取批次"):
        run_summary(db, 999)


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
