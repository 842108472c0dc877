"""Review workflow, reopen, manual merge and split, and the append-only audit trail.

SQLite always; PostgreSQL too when XUNJIAN_TEST_PG_URL is set.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError

from storage.audit import history
from storage.db import Database
from storage.errors import StorageError
from storage.grouping import merge_leads, split_page
from storage.models import AuditEvent, AuditImmutableError, Lead, LeadSplit
from storage.repository import list_leads, store_batch
from storage.workflow import LeadNotFound, WorkflowError, mark_referred, review
from tests.test_grouping import T0, db, page, partition  # noqa: F401 - db is a fixture

A1, A2, B1 = "https://a.example/1", "https://a.example/2", "https://b.example/1"


def one_lead(database: Database, url: str = A1, body: str = "初二数学 电话 13800138000") -> int:
    store_batch(database, None, [page(url, body)])
    return next(view.id for view in list_leads(database, all=True) if url in view.urls)


def status(database: Database, lead_id: int) -> str:
    with database.session() as session:
        lead = session.get(Lead, lead_id)
        assert lead is not None
        return lead.status


def audit_count(database: Database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


def drive(database: Database, lead_id: int, *actions: str) -> None:
    for action in actions:
        if action == "refer":
            mark_referred(database, [lead_id], "导出程序", "移交区教育局", {"file": "export-1.zip"})
        else:
            review(database, lead_id, action, "张三", f"理由：{action}")


# ---------------------------------------------------------------- transitions


def test_full_path_is_audited(db: Database) -> None:
    lead_id = one_lead(db)
    drive(db, lead_id, "start", "note", "confirm", "refer", "close")
    assert status(db, lead_id) == "closed"
    with db.session() as session:
        rows = history(session, lead_id)
    assert [(r.action, r.from_status, r.to_status) for r in rows] == [
        ("create", None, "new"),
        ("start", "new", "reviewing"),
        ("note", "reviewing", "reviewing"),
        ("confirm", "reviewing", "confirmed"),
        ("refer", "confirmed", "referred"),
        ("close", "referred", "closed"),
    ]
    assert rows[0].actor == "system" and rows[1].actor == "张三" and rows[4].actor == "导出程序"
    assert rows[4].details == {"file": "export-1.zip"} and rows[4].reason == "移交区教育局"
    assert all(r.at.tzinfo is not None for r in rows)


@pytest.mark.parametrize(
    ("path", "action", "state"),
    [
        ((), "confirm", "新线索"),
        ((), "close", "新线索"),
        (("start",), "start", "核查中"),
        (("start",), "close", "核查中"),
        (("start", "confirm"), "dismiss", "已确认"),
        (("start", "confirm", "refer"), "confirm", "已移交"),
        (("start", "dismiss"), "start", "已排除"),
        (("start", "confirm", "refer", "close"), "start", "已结案"),
    ],
)
def test_invalid_transitions_are_refused(db: Database, path: tuple[str, ...], action: str, state: str) -> None:
    lead_id = one_lead(db)
    drive(db, lead_id, *path)
    before, rows = status(db, lead_id), audit_count(db)
    with pytest.raises(WorkflowError) as caught:
        review(db, lead_id, action, "张三")
    message = str(caught.value)
    assert f"线索 {lead_id}" in message and f"“{state}”" in message and "当前允许" in message
    assert "\n" not in message
    assert (status(db, lead_id), audit_count(db)) == (before, rows)


def test_refer_is_not_a_human_review_action(db: Database) -> None:
    lead_id = one_lead(db)
    with pytest.raises(WorkflowError):
        review(db, lead_id, "refer", "张三")


def test_mark_referred_is_all_or_nothing(db: Database) -> None:
    confirmed = one_lead(db)
    fresh = one_lead(db, B1, "初三物理 微信 teacher_wang88")
    drive(db, confirmed, "start", "confirm")
    rows = audit_count(db)
    with pytest.raises(WorkflowError, match=f"线索 {fresh} 当前状态为“新线索”"):
        mark_referred(db, [confirmed, fresh], "导出程序")
    assert status(db, confirmed) == "confirmed" and audit_count(db) == rows
    assert mark_referred(db, [confirmed], "导出程序") == [confirmed]
    assert status(db, confirmed) == "referred"


def test_actor_note_and_unknown_lead_are_checked(db: Database) -> None:
    lead_id = one_lead(db)
    with pytest.raises(StorageError, match="缺少操作人"):
        review(db, lead_id, "start", "  ")
    with pytest.raises(WorkflowError, match="备注内容为空"):
        review(db, lead_id, "note", "张三", "")
    with pytest.raises(LeadNotFound, match="找不到编号为 999 的线索"):
        review(db, 999, "start", "张三")


# ---------------------------------------------------------------- reopen


@pytest.mark.parametrize("path", [("start", "confirm", "refer", "close"), ("start", "dismiss")])
def test_new_content_reopens_but_the_same_page_does_not(db: Database, path: tuple[str, ...]) -> None:
    record = page(A1, "初二数学 电话 13800138000")
    store_batch(db, None, [record])
    [view] = list_leads(db, all=True)
    drive(db, view.id, *path)
    closed = status(db, view.id)
    store_batch(db, None, [page(A1, record.text, fetched_at=T0 + timedelta(days=30))])
    assert status(db, view.id) == closed
    store_batch(db, None, [page(A2, "寒假初三物理 电话 13800138000", fetched_at=T0 + timedelta(days=31))])
    assert status(db, view.id) == "reopened"
    with db.session() as session:
        last = history(session, view.id)[-1]
    assert (last.action, last.actor, last.from_status, last.to_status) == ("reopen", "system", closed, "reopened")
    assert last.reason.startswith(f"新证据：{A2} 于 2026-04-02 10:00") and last.reason.endswith("出现新内容")
    [again] = list_leads(db, all=True)
    assert again.urls == [A1, A2]
    review(db, view.id, "start", "李四")
    assert status(db, view.id) == "reviewing"


def test_reopened_lead_can_be_confirmed_directly(db: Database) -> None:
    lead_id = one_lead(db)
    drive(db, lead_id, "start", "dismiss")
    store_batch(db, None, [page(A1, "初二数学 电话 13800138000 新增寒假班", fetched_at=T0 + timedelta(days=2))])
    assert status(db, lead_id) == "reopened"
    review(db, lead_id, "confirm", "张三")
    assert status(db, lead_id) == "confirmed"


# ---------------------------------------------------------------- manual merge and split


def test_manual_merge_keeps_the_older_lead(db: Database) -> None:
    first = one_lead(db)
    second = one_lead(db, B1, "初三物理 微信 teacher_wang88")
    assert merge_leads(db, second, first, "张三", "同一老板") == (first, second)
    [view] = list_leads(db, all=True)
    assert view.id == first and view.urls == [A1, B1]
    with db.session() as session:
        kept, gone = history(session, first)[-1], history(session, second)[-1]
    assert (kept.action, kept.actor, kept.reason, kept.details["merged_lead"]) == ("merge", "张三", "同一老板", second)
    assert (gone.to_status, gone.details["into_lead"]) == ("merged", first)
    with pytest.raises(WorkflowError, match=f"线索 {second} 已并入线索 {first}"):
        review(db, second, "start", "张三")
    with pytest.raises(WorkflowError, match="自身"):
        merge_leads(db, first, first, "张三")


def test_split_survives_restore_and_new_evidence(db: Database) -> None:
    first, second = page(A1, "初二数学 电话 13800138000"), page(B1, "初三物理 电话 13800138000")
    store_batch(db, None, [first, second])
    [view] = list_leads(db, all=True)
    new_id = split_page(db, view.id, B1, "张三", "不是同一家")
    assert partition(db) == {frozenset({A1}), frozenset({B1})}
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(LeadSplit)) == 1
        assert history(session, view.id)[-1].details["new_lead"] == new_id
        assert history(session, new_id)[-1].details["from_lead"] == view.id
    later = T0 + timedelta(days=1)
    store_batch(db, None, [page(A1, first.text, fetched_at=later), page(B1, second.text, fetched_at=later)])
    assert partition(db) == {frozenset({A1}), frozenset({B1})}
    store_batch(db, None, [page(B1, "初三物理冲刺 电话 13800138000", fetched_at=later)])
    store_batch(db, None, [page(A2, "初一英语 电话 13800138000", fetched_at=later)])
    assert partition(db) == {frozenset({A1, A2}), frozenset({B1})}


def test_split_refusals(db: Database) -> None:
    store_batch(db, None, [page(A1, "初二数学 电话 13800138000"), page(B1, "初三物理 微信 teacher_wang88")])
    lead_a = next(v.id for v in list_leads(db, all=True) if A1 in v.urls)
    with pytest.raises(StorageError, match=f"网页 {B1} 不属于线索 {lead_a}"):
        split_page(db, lead_a, B1, "张三")
    with pytest.raises(StorageError, match="无需拆分"):
        split_page(db, lead_a, A1, "张三")
    with pytest.raises(StorageError, match="数据库中没有网页"):
        split_page(db, lead_a, "https://nowhere.example/", "张三")


# ---------------------------------------------------------------- the audit trail is append-only


def test_audit_rows_cannot_be_changed_through_the_orm(db: Database) -> None:
    one_lead(db)
    with pytest.raises(AuditImmutableError):
        with db.transaction() as session:
            row = session.scalars(select(AuditEvent)).first()
            assert row is not None
            row.reason = "改写"
    with pytest.raises(AuditImmutableError):
        with db.transaction() as session:
            session.delete(session.scalars(select(AuditEvent)).first())
    with pytest.raises(AuditImmutableError):
        with db.transaction() as session:
            session.execute(update(AuditEvent).values(actor="别人"))
    with db.session() as session:
        assert [r.reason for r in session.scalars(select(AuditEvent))] == [f"新线索：{A1}"]


@pytest.mark.parametrize("statement", ["UPDATE lead_audit SET actor = 'x'", "DELETE FROM lead_audit"])
def test_audit_rows_cannot_be_changed_with_raw_sql(db: Database, statement: str) -> None:
    one_lead(db)
    with pytest.raises(DBAPIError, match="审计记录只能追加"):
        with db.engine.begin() as connection:
            connection.exec_driver_sql(statement)
    assert audit_count(db) == 1


def test_raw_sql_truncate_is_refused_on_postgresql(db: Database) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("TRUNCATE exists only on PostgreSQL")
    one_lead(db)
    with pytest.raises(DBAPIError, match="审计记录只能追加"):
        with db.engine.begin() as connection:
            connection.exec_driver_sql("TRUNCATE lead_audit")
    assert audit_count(db) == 1
