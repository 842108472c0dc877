"""Writing crawl results: store_batch into pages, snapshots, findings and leads, and crawl runs.

Runs against real SQLite, and PostgreSQL too when XUNJIAN_TEST_PG_URL is set (see tests.test_storage,
which holds the ``db`` fixture and the record helpers).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import numpy
import pytest
from sqlalchemy import func, select

from storage.db import Database
from storage.errors import StorageError
from storage.models import AuditEvent, CrawlRun, Evidence, Finding, Lead, Page, Snapshot, Source
from storage.records import BatchResult, EvidenceRecord
from storage.repository import finish_run, list_leads, run_summary, start_run, store_batch
from tests.test_storage import (  # noqa: F401 - db_fixture and db_url_fixture register fixtures
    T0,
    counts,
    db_fixture,
    db_url_fixture,
    finding,
    leads_by_key,
    page,
)


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


# ---------------------------------------------------------------- evidence rows and new leads in bulk


def _evidence(kind: str, seed: str) -> EvidenceRecord:
    digest = hashlib.sha256(seed.encode()).hexdigest()
    return EvidenceRecord(kind=kind, sha256=digest, path=f"evidence/sha256/{digest[:2]}/{digest}.{kind}",
                          size=len(seed), media_type="application/octet-stream", captured_at=T0)


def test_new_snapshots_get_one_evidence_row_per_kind(db: Database) -> None:
    first = page("https://a.example/1", "小升初 13800000001", findings=[finding()])
    first.evidence = [_evidence("warc", "w1"), _evidence("text", "t1"), _evidence("text", "t1-again")]
    second = page("https://a.example/2", "初二数学 13800000002", findings=[finding()])
    second.evidence = [_evidence("screenshot", "s2")]
    store_batch(db, None, [first, second, page("https://a.example/3", "普通新闻")])
    with db.session() as session:
        rows = session.execute(select(Page.url, Evidence.kind, Evidence.sha256, Evidence.size)
                               .join(Snapshot, Snapshot.id == Evidence.snapshot_id)
                               .join(Page, Page.id == Snapshot.page_id).order_by(Page.url, Evidence.kind)).all()
    assert rows == [
        ("https://a.example/1", "text", hashlib.sha256(b"t1").hexdigest(), 2),
        ("https://a.example/1", "warc", hashlib.sha256(b"w1").hexdigest(), 2),
        ("https://a.example/2", "screenshot", hashlib.sha256(b"s2").hexdigest(), 2),
    ]
    # The same content again with a kind the snapshot lacks: only that row is added.
    again = page("https://a.example/1", "小升初 13800000001", findings=[finding()])
    again.evidence = [_evidence("warc", "w1"), _evidence("screenshot", "s1")]
    store_batch(db, None, [again])
    with db.session() as session:
        kinds = session.scalars(select(Evidence.kind).join(Snapshot, Snapshot.id == Evidence.snapshot_id)
                                .join(Page, Page.id == Snapshot.page_id)
                                .where(Page.url == "https://a.example/1").order_by(Evidence.kind)).all()
    assert kinds == ["screenshot", "text", "warc"]


def test_invalid_evidence_of_a_new_snapshot_stores_nothing(db: Database) -> None:
    record = page("https://a.example/1", "小升初 13800000001", findings=[finding()])
    record.evidence = [_evidence("warc", "w1"), _evidence("video", "v1")]
    with pytest.raises(StorageError, match="证据类型 'video' 无效"):
        store_batch(db, None, [record])
    assert counts(db) == {"sources": 0, "pages": 0, "snapshots": 0, "findings": 0, "leads": 0}


def test_each_new_lead_has_one_create_audit_row_before_its_merge(db: Database) -> None:
    store_batch(db, None, [
        page("https://a.example/1", "小升初 13800000001", findings=[finding()]),
        page("https://b.example/2", "初二数学 微信号：teacher_wang88", findings=[finding()],
             fetched_at=T0 + timedelta(hours=1)),
        page("https://c.example/3", "报名 13800000001 或 微信号：teacher_wang88", findings=[finding()],
             fetched_at=T0 + timedelta(hours=2)),
    ])
    with db.session() as session:
        leads = session.scalars(select(Lead).order_by(Lead.id)).all()
        trail = session.execute(select(AuditEvent.lead_id, AuditEvent.action, AuditEvent.to_status,
                                       AuditEvent.reason).order_by(AuditEvent.id)).all()
    older, newer = leads
    assert (older.key, older.status, older.merged_into_id) == ("phone:13800000001", "new", None)
    assert (newer.key, newer.status, newer.merged_into_id) == ("wechat:teacher_wang88", "merged", older.id)
    assert older.first_seen == T0 and older.last_seen == T0 + timedelta(hours=2)
    assert older.created_at is not None and older.status_changed_at is not None
    assert trail[:2] == [(older.id, "create", "new", "新线索：https://a.example/1"),
                         (newer.id, "create", "new", "新线索：https://b.example/2")]
    assert sorted((lead_id, action) for lead_id, action, _, _ in trail[2:]) == [
        (older.id, "merge"), (newer.id, "merge")]


# ---------------------------------------------------------------- lookups done once per batch


def _hand_made_lead(db: Database, key: str) -> None:
    """A lead row holding ``key`` but no identifiers (as a key can outlive what it was made from)."""
    with db.transaction() as session:
        session.add(Lead(key=key, name="旧线索", status="new", severity=1, score=0.1, categories=["banned_ad"],
                         first_seen=T0, last_seen=T0))


def test_lead_keys_taken_before_a_batch_get_the_next_free_suffix(db: Database) -> None:
    store_batch(db, None, [page("https://a.example/0", "普通新闻")])
    # Rows written between two batches: the next batch looks its keys up again.
    _hand_made_lead(db, "phone:13900000001")
    _hand_made_lead(db, "phone:13900000001#2")
    _hand_made_lead(db, "phone:13900000002")
    store_batch(db, None, [
        page("https://a.example/1", "小升初 13900000001", findings=[finding()]),
        page("https://a.example/2", "小升初 13900000002", findings=[finding()]),
        page("https://a.example/3", "小升初 13900000003", findings=[finding()]),
    ])
    with db.session() as session:
        made = session.execute(select(Lead.key, Lead.name).where(Lead.name != "旧线索").order_by(Lead.id)).all()
    assert [key for key, _ in made] == ["phone:13900000001#3", "phone:13900000002#2", "phone:13900000003"]
    # A later page with the same phone joins the lead that holds it, whatever its key.
    result = store_batch(db, None, [page("https://a.example/4", "初二 13900000001", findings=[finding()])])
    assert result.new_leads == 0
    assert [view.urls for view in list_leads(db, all=True) if "https://a.example/4" in view.urls] == [
        ["https://a.example/1", "https://a.example/4"]]


def test_run_counters_add_up_over_batches_and_a_missing_run_stores_nothing(db: Database) -> None:
    run_id = start_run(db, "demo", "demo_site", {})
    store_batch(db, run_id, [page("https://a.example/1", "小升初 13800000001", findings=[finding()]),
                             page("https://a.example/2", "普通新闻")])
    store_batch(db, run_id, [page("https://a.example/3", "初二 13800000003",
                                  findings=[finding(), finding(rule="ban.holiday", start=3, end=5)])])
    summary = run_summary(db, run_id)
    assert (summary["pages"], summary["new_findings"], summary["new_leads"]) == (3, 3, 2)
    before = counts(db)
    with pytest.raises(StorageError, match="找不到编号为 999 的抓取批次"):
        store_batch(db, 999, [page("https://a.example/9", "小升初 13800000009", findings=[finding()])])
    assert counts(db) == before


def test_batch_source_lookup_sees_a_source_registered_between_batches(db: Database) -> None:
    store_batch(db, None, [page("https://a.example/1", "普通新闻", source="late")])
    with db.session() as session:
        assert session.execute(select(Source.name, Source.kind)).all() == [("late", "unknown")]
    start_run(db, "later", "site", {"start_urls": []})
    store_batch(db, None, [page("https://a.example/2", "普通新闻", source="later"),
                           page("https://a.example/3", "普通新闻", source="late")])
    with db.session() as session:
        owners = dict(session.execute(select(Page.url, Source.name).join(Source, Source.id == Page.source_id)).all())
        assert session.scalar(select(func.count()).select_from(Source)) == 2
    assert owners == {"https://a.example/1": "late", "https://a.example/2": "later", "https://a.example/3": "late"}


# ---------------------------------------------------------------- code-point tables of the identifier scan


_EVERY_CHARACTER = "".join(map(chr, range(0x110000)))


def test_start_sets_hold_exactly_what_the_start_patterns_match() -> None:
    from storage import identifiers as ids

    for name, pattern in (("mobile", ids._MOBILE_START), ("landline", ids._LANDLINE_START),
                          ("wechat", ids._WECHAT_START)):
        listed = numpy.flatnonzero(ids._STARTS.table & ids._STARTS.bits[name]).tolist()
        assert listed == [ord(char) for char in pattern.findall(_EVERY_CHARACTER)], name


def test_start_positions_are_every_match_of_the_start_patterns() -> None:
    from storage import identifiers as ids

    text = "电话：１３８ 0013 8000（王老师），(0571)88886666 加V: Wang_88 微信 vx123456" * 3 + "\ud800" + "𝐀0"
    found = ids._STARTS.positions(text)
    assert found["mobile"] == [m.start() for m in ids._MOBILE_START.finditer(text)]
    assert found["landline"] == [m.start() for m in ids._LANDLINE_START.finditer(text)]
    assert found["wechat"] == [m.start() for m in ids._WECHAT_START.finditer(text)]
    assert found["mobile"][-1] == len(text) - 1  # indexes count code points, astral ones included


def test_width_fold_flags_match_the_fold_table_and_the_context_class() -> None:
    from storage import width

    width.width_fold("ａ")  # builds the tables
    flags = width._FLAGS
    assert flags is not None and width._FOLD is not None
    assert numpy.flatnonzero(flags & width._FOLDS).tolist() == sorted(width._FOLD)
    context = [ord(char) for char in width._NFKC_CONTEXT.findall(_EVERY_CHARACTER)]
    assert numpy.flatnonzero(flags & width._CONTEXT).tolist() == context


def test_width_fold_of_long_text_equals_nfkc_with_ascii_dashes() -> None:
    import unicodedata

    from storage import width

    base = "报名电话：１３８－００１３－８０００，ＱＱ：１２３４５　（东城校区）" + "初三数学一对一辅导，保证提分！" * 200
    for text in (base, base + "\ud800", base + "ｅ\u0301", base + "𝐀", "plain ascii", ""):
        expected = unicodedata.normalize("NFKC", text) if "\ud800" not in text else None
        if expected is None:  # a lone surrogate: folded like the rest, kept as it is
            expected = unicodedata.normalize("NFKC", text[:-1]) + "\ud800"
        assert width.width_fold(text) == expected.translate(str.maketrans({c: "-" for c in "‐‑‒–—―−"}))
