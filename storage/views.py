"""Read-side views of leads for reports and the command line."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, or_, select

from storage.db import Database
from storage.errors import StorageError
from storage.models import Finding, Lead, Page, Snapshot

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
    last_seen falls on it. Ordered by severity, score, last_seen (all
    descending), then id.
    """
    query = select(Lead)
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
