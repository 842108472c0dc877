"""Read-side views of leads for reports and the command line."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, inspect, or_, select

from storage.db import Database
from storage.errors import StorageError
from storage import audit, models
from storage.models import Finding, Lead, LeadIdentifier, Page, Snapshot

DEFAULT_TZ = "Asia/Shanghai"


@dataclass
class LeadView:
    id: int
    key: str
    name: str
    categories: list[str]
    severity: int
    score: float
    status: str
    urls: list[str]
    first_seen: datetime
    last_seen: datetime
    finding_count: int


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise StorageError(f"未知时区 {tz!r}（例如 Asia/Shanghai）") from error


def day_bounds(day: date, tz: str = DEFAULT_TZ) -> tuple[datetime, datetime]:
    """UTC start (inclusive) and end (exclusive) of calendar ``day`` in ``tz``."""
    zone = _zone(tz)
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def list_leads(
    db: Database,
    *,
    day: date | None = None,
    all: bool = False,  # noqa: A002 - the public keyword the CLI passes
    tz: str = DEFAULT_TZ,
) -> list[LeadView]:
    """Leads seen on ``day`` in ``tz`` (default today there), or every lead if ``all``.

    A lead counts for a day when one of its snapshots was fetched then or its
    last_seen falls on it. Leads merged into another one are left out. Ordered by severity, score, last_seen (all
    descending), then id.
    """
    query = select(Lead).where(Lead.merged_into_id.is_(None))
    if not all:
        if day is None:
            day = datetime.now(_zone(tz)).date()
        start, end = day_bounds(day, tz)
        fetched_that_day = (
            select(Finding.id)
            .join(Snapshot, Snapshot.id == Finding.snapshot_id)
            .where(
                Finding.lead_id == Lead.id,
                Snapshot.fetched_at >= start,
                Snapshot.fetched_at < end,
            )
            .exists()
        )
        query = query.where(
            or_(fetched_that_day, (Lead.last_seen >= start) & (Lead.last_seen < end))
        )
    query = query.order_by(
        Lead.severity.desc(), Lead.score.desc(), Lead.last_seen.desc(), Lead.id
    )
    with db.session() as session:
        leads = list(session.scalars(query))
        urls: dict[int, set[str]] = defaultdict(set)
        counts: dict[int, int] = {}
        for chunk in _chunks([lead.id for lead in leads]):
            url_rows = session.execute(
                select(Finding.lead_id, Page.url)
                .join(Snapshot, Snapshot.id == Finding.snapshot_id)
                .join(Page, Page.id == Snapshot.page_id)
                .where(Finding.lead_id.in_(chunk))
                .distinct()
            )
            for lead_id, url in url_rows:
                urls[lead_id].add(url)
            count_rows = session.execute(
                select(Finding.lead_id, func.count(Finding.id))
                .where(Finding.lead_id.in_(chunk))
                .group_by(Finding.lead_id)
            )
            counts.update({lead_id: count for lead_id, count in count_rows})
        return [
            LeadView(
                id=lead.id,
                key=lead.key,
                name=lead.name,
                categories=list(lead.categories),
                severity=lead.severity,
                score=lead.score,
                status=lead.status,
                urls=sorted(urls[lead.id]),
                first_seen=lead.first_seen,
                last_seen=lead.last_seen,
                finding_count=counts.get(lead.id, 0),
            )
            for lead in leads
        ]


@dataclass
class DailyList:
    day: date
    leads: list[LeadView]
    by_category: dict[str, int]
    by_status: dict[str, int]


def daily_list(db: Database, day: date | None = None, tz: str = DEFAULT_TZ) -> DailyList:
    """The day's list: leads with evidence that day, most serious first, with counts."""
    if day is None:
        day = datetime.now(_zone(tz)).date()
    leads = list_leads(db, day=day, tz=tz)
    by_category = Counter(category for lead in leads for category in lead.categories)
    by_status = Counter(lead.status for lead in leads)
    def ordered(counts: Counter[str]) -> dict[str, int]:
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    return DailyList(day, leads, ordered(by_category), ordered(by_status))


@dataclass
class IdentifierView:
    kind: str
    value: str
    raws: list[str]
    pages: int
    first_seen: datetime
    last_seen: datetime


@dataclass
class FindingView:
    id: int
    url: str
    fetched_at: datetime
    category: str
    rule: str
    severity: int
    text: str
    before: str
    after: str
    explanation: str
    basis: str


@dataclass
class SnapshotView:
    id: int
    url: str
    fetched_at: datetime
    status: int
    content_hash: str
    findings: int
    evidence: list[dict[str, object]] = field(default_factory=list)


@dataclass
class LeadDetail:
    lead: LeadView
    merged_into: int | None
    identifiers: list[IdentifierView]
    findings: list[FindingView]
    snapshots: list[SnapshotView]
    history: list[audit.AuditRow]


CONTEXT_CHARS = 40


def _identifier_views(session, lead_id: int) -> list[IdentifierView]:
    rows = session.scalars(select(LeadIdentifier).where(LeadIdentifier.lead_id == lead_id)).all()
    grouped: dict[tuple[str, str], list[LeadIdentifier]] = defaultdict(list)
    for row in rows:
        grouped[(row.kind, row.value)].append(row)
    views = [
        IdentifierView(kind, value, sorted({r.raw for r in items}), len({r.page_id for r in items}),
                       min(r.first_seen for r in items), max(r.last_seen for r in items))
        for (kind, value), items in grouped.items()
    ]
    return sorted(views, key=lambda v: (v.kind, v.first_seen, v.value))


def _evidence(session, snapshot_ids: list[int]) -> dict[int, list[dict[str, object]]]:
    evidence_model = getattr(models, "Evidence", None)
    found: dict[int, list[dict[str, object]]] = defaultdict(list)
    if evidence_model is None or not snapshot_ids:
        return found
    if not inspect(session.connection()).has_table(evidence_model.__tablename__):
        return found
    for row in session.scalars(select(evidence_model).where(evidence_model.snapshot_id.in_(snapshot_ids))):
        found[row.snapshot_id].append(
            {name: getattr(row, name) for name in ("kind", "path", "sha256", "size") if hasattr(row, name)}
        )
    return found


def lead_detail(db: Database, lead_id: int) -> LeadDetail:
    """Everything an inspector needs about one lead (also one merged into another)."""
    with db.session() as session:
        lead = session.get(Lead, lead_id)
        if lead is None:
            raise StorageError(f"找不到编号为 {lead_id} 的线索")
        rows = session.execute(
            select(Finding, Snapshot, Page.url)
            .join(Snapshot, Snapshot.id == Finding.snapshot_id)
            .join(Page, Page.id == Snapshot.page_id)
            .where(Finding.lead_id == lead_id)
            .order_by(Snapshot.fetched_at, Page.url, Finding.start)
        ).all()
        findings: list[FindingView] = []
        snapshots: dict[int, SnapshotView] = {}
        for finding, snapshot, url in rows:
            text = snapshot.text
            findings.append(FindingView(
                finding.id, url, snapshot.fetched_at, finding.category, finding.rule, finding.severity,
                text[finding.start:finding.end] or finding.text,
                text[max(0, finding.start - CONTEXT_CHARS):finding.start], text[finding.end:finding.end + CONTEXT_CHARS],
                finding.explanation, finding.basis,
            ))
            view = snapshots.setdefault(snapshot.id, SnapshotView(
                snapshot.id, url, snapshot.fetched_at, snapshot.status, snapshot.content_hash, 0))
            view.findings += 1
        for snapshot_id, items in _evidence(session, list(snapshots)).items():
            snapshots[snapshot_id].evidence = items
        urls = sorted({view.url for view in snapshots.values()})
        summary = LeadView(lead.id, lead.key, lead.name, list(lead.categories), lead.severity, lead.score,
                           lead.status, urls, lead.first_seen, lead.last_seen, len(findings))
        return LeadDetail(
            summary, lead.merged_into_id, _identifier_views(session, lead_id), findings,
            sorted(snapshots.values(), key=lambda v: (v.fetched_at, v.url)), audit.history(session, lead_id),
        )
