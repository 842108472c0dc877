"""Writing crawl results and reading leads back.

Every write function runs in one short transaction of its own. Upserts are
select-then-insert inside that transaction, which works the same on SQLite and
PostgreSQL for the batch sizes the crawler uses (tens of pages).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from storage.db import Database, first_line, mask_url
from storage.errors import StorageError
from storage.evidence import evidence_rows
from storage.batch import RecordFailed, store_new, store_records
from storage.models import Evidence
from storage.models import URL_LENGTH, CrawlRun, Finding, Lead, LeadIdentifier, Page, Snapshot, Source, utcnow
from storage.records import BatchResult, EvidenceRecord, PageRecord
from storage.views import LeadView, list_leads

__all__ = [
    "LEAD_CATEGORIES",
    "KnownPage",
    "LeadView",
    "abandon_run",
    "fail_run",
    "ensure_source",
    "finish_run",
    "known_pages",
    "list_leads",
    "run_summary",
    "start_run",
    "store_batch",
    "touch_pages",
]

LEAD_CATEGORIES = frozenset({"banned_ad", "exaggerated_marketing", "disguised_tutoring"})
UNKNOWN_SOURCE_KIND = "unknown"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

# A batch reads its run and source ids and adds to the run's counters with Core statements built once:
# an ORM load and unit-of-work flush per batch cost more than the three statements they stand for.
_RUNS = CrawlRun.__table__
_SOURCES = Source.__table__
_RUN_EXISTS = select(_RUNS.c.id).where(_RUNS.c.id == bindparam("run_id"))
_SOURCE_ID = select(_SOURCES.c.id).where(_SOURCES.c.name == bindparam("name"))
_COUNT_BATCH = update(_RUNS).where(_RUNS.c.id == bindparam("run_id")).values(
    pages=_RUNS.c.pages + bindparam("pages"), new_findings=_RUNS.c.new_findings + bindparam("new_findings"),
    new_leads=_RUNS.c.new_leads + bindparam("new_leads"))


def ensure_source(session: Session, name: str, kind: str, config: dict[str, Any]) -> Source:
    """The Source called ``name``, created or updated to ``kind`` and ``config``."""
    source = session.scalars(select(Source).where(Source.name == name)).one_or_none()
    if source is None:
        source = Source(name=name, kind=kind, config=dict(config))
        session.add(source)
    else:
        source.kind = kind
        source.config = dict(config)
    session.flush()
    return source


def _run(session: Session, run_id: int) -> CrawlRun:
    run = session.get(CrawlRun, run_id)
    if run is None:
        raise StorageError(f"找不到编号为 {run_id} 的抓取批次")
    return run


def start_run(db: Database, source_name: str, kind: str, config: dict[str, Any]) -> int:
    """Record the start of a crawl of ``source_name``; returns the run id."""
    with db.transaction() as session:
        source = ensure_source(session, source_name, kind, config)
        run = CrawlRun(source_id=source.id, started_at=utcnow())
        session.add(run)
        session.flush()
        return run.id


def finish_run(
    db: Database,
    run_id: int,
    finish_reason: str,
    stats: dict[str, Any],
    pages: int,
    errors: int,
    new_findings: int,
    new_leads: int,
) -> None:
    """Record the end of run ``run_id`` with its final counters and stats."""
    with db.transaction() as session:
        run = _run(session, run_id)
        run.finished_at = utcnow()
        run.finish_reason = finish_reason
        run.stats = dict(stats)
        run.pages = pages
        run.errors = errors
        run.new_findings = new_findings
        run.new_leads = new_leads


def run_summary(db: Database, run_id: int) -> dict[str, Any]:
    """The stored columns of run ``run_id`` plus its source's name."""
    with db.session() as session:
        run = _run(session, run_id)
        source = session.get(Source, run.source_id)
        return {
            "id": run.id,
            "source_id": run.source_id,
            "source": source.name if source is not None else None,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "finish_reason": run.finish_reason,
            "pages": run.pages,
            "errors": run.errors,
            "new_findings": run.new_findings,
            "new_leads": run.new_leads,
            "stats": dict(run.stats),
        }


def _validate(record: PageRecord) -> None:
    if not record.url or len(record.url) > URL_LENGTH:
        raise StorageError(
            f"页面记录的 url 长度为 {len(record.url)}，应在 1 到 {URL_LENGTH} 之间：{record.url[:200]}"
        )
    fetched_at = record.fetched_at
    if fetched_at.tzinfo is None or fetched_at.utcoffset() is None:
        raise StorageError(
            f"页面记录 {record.url} 的抓取时间 fetched_at={fetched_at.isoformat()} 缺少时区"
        )
    if not _SHA256_HEX.fullmatch(record.content_hash):
        raise StorageError(
            f"页面记录 {record.url} 的 content_hash 不是 64 位十六进制 SHA-256：{record.content_hash[:80]!r}"
        )


class _BatchWriter:
    """Stores one batch of PageRecords inside an open transaction."""

    def __init__(self, session: Session, lead_categories: frozenset[str]) -> None:
        self.session = session
        self.lead_categories = lead_categories
        self.result = BatchResult()
        self._sources: dict[str, int] = {}

    def source_id(self, name: str) -> int:
        if name not in self._sources:
            self.session.flush()
            found = self.session.scalar(_SOURCE_ID, {"name": name})
            if found is None:
                found = ensure_source(self.session, name, UNKNOWN_SOURCE_KIND, {}).id
            self._sources[name] = found
        return self._sources[name]

    def page(self, record: PageRecord, fetched_at: datetime) -> Page:
        page = self.session.scalars(select(Page).where(Page.url == record.url)).one_or_none()
        if page is None:
            page = Page(
                url=record.url,
                source_id=self.source_id(record.source),
                first_seen=fetched_at,
                last_seen=fetched_at,
                last_status=record.status,
                requested_url=record.requested_url,
            )
            self.session.add(page)
            self.session.flush()
            self.result.new_pages += 1
            return page
        page.first_seen = min(page.first_seen, fetched_at)
        if fetched_at >= page.last_seen:
            page.last_seen = fetched_at
            page.last_status = record.status
            page.requested_url = record.requested_url
        return page

    def store(self, record: PageRecord) -> None:
        fetched_at = record.fetched_at.astimezone(timezone.utc)
        page = self.page(record, fetched_at)
        latest = fetched_at >= page.last_seen
        snapshot = self.session.scalars(
            select(Snapshot).where(
                Snapshot.page_id == page.id, Snapshot.content_hash == record.content_hash
            )
        ).one_or_none()
        if snapshot is not None:
            if latest:
                page.last_snapshot_id = snapshot.id
            attach_evidence(self.session, snapshot.id, record.evidence)
            self.touch_leads(snapshot.id, fetched_at)
            return
        # New content: the set-based path of storage.batch (store_batch sends it there directly).
        store_new(self.session, self, [record], self.lead_categories)

    def touch_leads(self, snapshot_id: int, fetched_at: datetime) -> None:
        lead_ids = select(Finding.lead_id).where(Finding.snapshot_id == snapshot_id)
        leads = self.session.scalars(select(Lead).where(Lead.id.in_(lead_ids)))
        for lead in leads:
            lead.last_seen = max(lead.last_seen, fetched_at)
        page_id = select(Snapshot.page_id).where(Snapshot.id == snapshot_id).scalar_subquery()
        identifiers = self.session.scalars(select(LeadIdentifier).where(
            LeadIdentifier.lead_id.in_(lead_ids), LeadIdentifier.page_id == page_id))
        for row in identifiers:
            row.last_seen = max(row.last_seen, fetched_at)


def attach_evidence(session: Session, snapshot_id: int, records: Iterable[EvidenceRecord]) -> int:
    """Add evidence rows to a snapshot, skipping kinds it already has; returns rows added."""
    present = set(session.scalars(select(Evidence.kind).where(Evidence.snapshot_id == snapshot_id)))
    rows = evidence_rows(snapshot_id, records, present)
    for row in rows:
        session.add(Evidence(**row))
    return len(rows)


def store_batch(
    db: Database,
    run_id: int | None,
    records: Iterable[PageRecord],
    *,
    lead_categories: Iterable[str] = LEAD_CATEGORIES,
) -> BatchResult:
    """Store pages, new snapshots, their findings and leads in one transaction.

    A record whose (url, content_hash) is already stored only refreshes the
    page's and its leads' last-seen times. When ``run_id`` is given, the run's
    page, finding and lead counters grow by this batch's numbers.
    """
    records = list(records)
    for record in records:
        _validate(record)
    with db.transaction() as session:
        if run_id is not None and session.scalar(_RUN_EXISTS, {"run_id": run_id}) is None:
            _run(session, run_id)  # raises the error naming the missing run
        writer = _BatchWriter(session, frozenset(lead_categories))
        try:
            store_records(session, writer, records, writer.lead_categories)
        except RecordFailed as failed:
            raise StorageError(
                f"保存页面 {failed.url} 到数据库 {mask_url(db.engine.url)} 失败：{first_line(failed.error)}"
            ) from failed.error
        writer.result.pages = len(records)
        if run_id is not None:
            session.execute(_COUNT_BATCH, {"run_id": run_id, "pages": writer.result.pages,
                                           "new_findings": writer.result.new_findings,
                                           "new_leads": writer.result.new_leads})
        return writer.result


# --- unchanged pages (conditional requests, equal content hashes) and interrupted runs ----------

@dataclass(frozen=True)
class KnownPage:
    """What the last stored snapshot of a page says about it, for the next crawl of its source."""

    etag: str | None
    last_modified: str | None
    content_hash: str
    complete: bool  # nothing left to capture: not flagged, or flagged with evidence


def _header(headers: dict[str, Any], name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name and isinstance(value, str) and value.strip():
            return value.strip()
    return None


def known_pages(db: Database, source_name: str) -> dict[str, KnownPage]:
    """Validators and content hash of every page of ``source_name``, keyed by final and requested URL."""
    flagged = select(Finding.id).where(Finding.snapshot_id == Snapshot.id).exists()
    archived = select(Evidence.id).where(Evidence.snapshot_id == Snapshot.id).exists()
    query = (
        select(Page.url, Page.requested_url, Snapshot.headers, Snapshot.content_hash, flagged, archived)
        .join(Snapshot, Snapshot.id == Page.last_snapshot_id)
        .join(Source, Source.id == Page.source_id)
        .where(Source.name == source_name)
    )
    known: dict[str, KnownPage] = {}
    with db.session() as session:
        for url, requested, headers, content_hash, has_findings, has_evidence in session.execute(query):
            page = KnownPage(_header(headers, "etag"), _header(headers, "last-modified"), content_hash,
                             not has_findings or bool(has_evidence))
            known[url] = page
            if requested and requested != url:
                known.setdefault(requested, page)
    return known


def touch_pages(db: Database, seen: Iterable[tuple[str, datetime]]) -> int:
    """Unchanged pages were seen again: move their (and their leads') last-seen time; returns pages touched."""
    touched = 0
    with db.transaction() as session:
        writer = _BatchWriter(session, frozenset())
        for url, fetched_at in seen:
            fetched_at = fetched_at.astimezone(timezone.utc)
            page = session.scalars(select(Page).where(Page.url == url)).one_or_none()
            if page is None:
                page = session.scalars(select(Page).where(Page.requested_url == url).limit(1)).one_or_none()
            if page is None:
                continue
            if fetched_at > page.last_seen:
                page.last_seen = fetched_at
            if page.last_snapshot_id is not None:
                writer.touch_leads(page.last_snapshot_id, fetched_at)
            touched += 1
    return touched


def fail_run(db: Database, run_id: int, reason: str, message: str) -> None:
    """Mark run ``run_id`` failed (whatever end Scrapy recorded for it) and keep the one-line cause."""
    with db.transaction() as session:
        run = _run(session, run_id)
        run.finished_at = run.finished_at or utcnow()
        run.finish_reason = reason
        run.stats = {**(run.stats or {}), "xunjian/failure": message}


def abandon_run(db: Database, run_id: int, reason: str) -> bool:
    """Close a run whose process died without recording its end; False when it had ended already."""
    with db.transaction() as session:
        run = session.get(CrawlRun, run_id)
        if run is None or run.finished_at is not None:
            return False
        run.finished_at = utcnow()
        run.finish_reason = reason
        return True
