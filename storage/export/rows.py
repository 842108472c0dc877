"""Which leads an export holds, and everything about each one, loaded in batched queries.

``select_lead_ids`` picks the leads (by status and/or day, merged leads never);
``load_rows`` loads, for a list of lead ids, their findings with context, snapshots,
identifiers and evidence files in a handful of queries per 500 leads, so exporting
a thousand leads does not cost thousands of round trips.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import or_, select

from detectors.model import CATEGORY_LABELS
from storage.db import Database
from storage.errors import StorageError
from storage.evidence import evidence_for_snapshots
from storage.models import Finding, Lead, LeadIdentifier, Page, Snapshot
from storage.views import DEFAULT_TZ, day_bounds
from storage.workflow import STATUS_NAMES

CONTEXT_CHARS = 40
CHUNK = 500
ALL_STATUSES = "all"
EXPORTABLE_STATUSES = tuple(status for status in STATUS_NAMES if status != "merged")


def category_name(category: str) -> str:
    return CATEGORY_LABELS.get(category, category)


@dataclass
class FindingRow:
    id: int
    snapshot_id: int
    url: str
    fetched_at: datetime
    category: str
    subcategory: str
    rule: str
    severity: int
    start: int
    end: int
    text: str
    normalized: str
    before: str
    after: str
    explanation: str
    basis: str
    rules_version: str


@dataclass
class EvidenceFile:
    snapshot_id: int
    kind: str
    sha256: str
    path: Path  # absolute, under the data directory
    size: int
    media_type: str
    captured_at: datetime


@dataclass
class SnapshotRow:
    id: int
    url: str
    final_url: str
    title: str
    fetched_at: datetime
    status: int
    content_hash: str
    rules_version: str
    evidence: list[EvidenceFile] = field(default_factory=list)


@dataclass
class LeadRow:
    id: int
    key: str
    name: str
    status: str
    categories: list[str]
    severity: int
    score: float
    first_seen: datetime
    last_seen: datetime
    identifiers: dict[str, list[str]] = field(default_factory=dict)  # kind -> values as written
    findings: list[FindingRow] = field(default_factory=list)
    snapshots: list[SnapshotRow] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return sorted({snapshot.url for snapshot in self.snapshots})

    @property
    def finding_count(self) -> int:
        return len(self.findings)

    @property
    def evidence(self) -> list[EvidenceFile]:
        return [item for snapshot in self.snapshots for item in snapshot.evidence]

    @property
    def rules_versions(self) -> list[str]:
        return sorted({f.rules_version for f in self.findings} | {s.rules_version for s in self.snapshots})

    @property
    def bases(self) -> list[str]:
        return list(dict.fromkeys(f.basis for f in self.most_serious() if f.basis))

    def most_serious(self) -> list[FindingRow]:
        return sorted(self.findings, key=lambda f: (-f.severity, f.fetched_at, f.url, f.start))

    def excerpts(self, limit: int = 5) -> list[str]:
        """Distinct matched texts, most serious first."""
        texts = dict.fromkeys(f.text.strip() for f in self.most_serious() if f.text.strip())
        return list(texts)[:limit]

    def ids(self, kind: str) -> list[str]:
        return self.identifiers.get(kind, [])


def _status_condition(status: str | None):
    if status is None or status == ALL_STATUSES:
        return None
    if status not in EXPORTABLE_STATUSES:
        allowed = "、".join((*EXPORTABLE_STATUSES, ALL_STATUSES))
        raise StorageError(f"未知的线索状态 {status!r}（可用：{allowed}）")
    return Lead.status == status


def select_lead_ids(
    db: Database, *, status: str | None = "confirmed", day: date | None = None, tz: str = DEFAULT_TZ
) -> list[int]:
    """Ids of active leads in ``status`` (``all``/None: any) seen on ``day``, most serious first.

    A lead counts for a day as in ``storage.views.list_leads``: one of its
    snapshots was fetched that day, or its last_seen falls on it.
    """
    query = select(Lead.id).where(Lead.merged_into_id.is_(None))
    condition = _status_condition(status)
    if condition is not None:
        query = query.where(condition)
    if day is not None:
        start, end = day_bounds(day, tz)
        fetched = (
            select(Finding.id)
            .join(Snapshot, Snapshot.id == Finding.snapshot_id)
            .where(Finding.lead_id == Lead.id, Snapshot.fetched_at >= start, Snapshot.fetched_at < end)
            .exists()
        )
        query = query.where(or_(fetched, (Lead.last_seen >= start) & (Lead.last_seen < end)))
    query = query.order_by(Lead.severity.desc(), Lead.score.desc(), Lead.last_seen.desc(), Lead.id)
    with db.session() as session:
        return list(session.scalars(query))


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _load_chunk(session, chunk: list[int], rows: dict[int, LeadRow]) -> dict[int, SnapshotRow]:
    for lead in session.scalars(select(Lead).where(Lead.id.in_(chunk))):
        rows[lead.id] = LeadRow(
            lead.id, lead.key, lead.name, lead.status, list(lead.categories), lead.severity,
            float(lead.score), lead.first_seen, lead.last_seen,
        )
    found = session.execute(
        select(Finding, Snapshot.page_id, Snapshot.fetched_at, Page.url)
        .join(Snapshot, Snapshot.id == Finding.snapshot_id)
        .join(Page, Page.id == Snapshot.page_id)
        .where(Finding.lead_id.in_(chunk))
    ).all()
    snapshot_ids = sorted({finding.snapshot_id for finding, *_ in found})
    snapshots: dict[int, SnapshotRow] = {}
    texts: dict[int, str] = {}
    for part in _chunks(snapshot_ids):
        for snap, url in session.execute(
            select(Snapshot, Page.url).join(Page, Page.id == Snapshot.page_id).where(Snapshot.id.in_(part))
        ):
            snapshots[snap.id] = SnapshotRow(snap.id, url, snap.final_url, snap.title, snap.fetched_at,
                                             snap.status, snap.content_hash, snap.rules_version)
            texts[snap.id] = snap.text
    lead_snapshots: dict[int, set[int]] = defaultdict(set)
    for finding, _page_id, fetched_at, url in found:
        text = texts.get(finding.snapshot_id, "")
        start, end = finding.start, finding.end
        rows[finding.lead_id].findings.append(FindingRow(
            finding.id, finding.snapshot_id, url, fetched_at, finding.category, finding.subcategory,
            finding.rule, finding.severity, start, end, text[start:end] or finding.text, finding.normalized,
            text[max(0, start - CONTEXT_CHARS):start], text[end:end + CONTEXT_CHARS],
            finding.explanation, finding.basis, finding.rules_version,
        ))
        lead_snapshots[finding.lead_id].add(finding.snapshot_id)
    for lead_id, ids in lead_snapshots.items():
        rows[lead_id].snapshots = sorted((snapshots[i] for i in ids), key=lambda s: (s.fetched_at, s.url, s.id))
        rows[lead_id].findings.sort(key=lambda f: (f.fetched_at, f.url, f.start, f.id))
    identifiers: dict[int, dict[str, dict[str, None]]] = defaultdict(lambda: defaultdict(dict))
    for lead_id, kind, value, raw in session.execute(
        select(LeadIdentifier.lead_id, LeadIdentifier.kind, LeadIdentifier.value, LeadIdentifier.raw)
        .where(LeadIdentifier.lead_id.in_(chunk))
        .order_by(LeadIdentifier.lead_id, LeadIdentifier.kind, LeadIdentifier.first_seen, LeadIdentifier.id)
    ):
        shown = value if kind in ("phone", "wechat", "qq", "uscc", "license") else (raw or value)
        identifiers[lead_id][kind][shown] = None
    for lead_id, kinds in identifiers.items():
        rows[lead_id].identifiers = {kind: list(values) for kind, values in kinds.items()}
    return snapshots


def load_rows(
    db: Database, lead_ids: list[int], data_root: str | os.PathLike[str] | None = None
) -> list[LeadRow]:
    """Full export rows for ``lead_ids``, in that order, with evidence paths under ``data_root``."""
    rows: dict[int, LeadRow] = {}
    snapshots: dict[int, SnapshotRow] = {}
    with db.session() as session:
        for chunk in _chunks(list(lead_ids)):
            snapshots.update(_load_chunk(session, chunk, rows))
    for item in evidence_for_snapshots(db, list(snapshots), data_root):
        snapshots[item.snapshot_id].evidence.append(EvidenceFile(
            item.snapshot_id, item.kind, item.sha256, Path(item.path), item.size, item.media_type,
            item.captured_at,
        ))
    missing = [lead_id for lead_id in lead_ids if lead_id not in rows]
    if missing:
        raise StorageError(f"找不到编号为 {missing[0]} 的线索")
    return [rows[lead_id] for lead_id in lead_ids]


_UNSAFE = str.maketrans({ch: "_" for ch in '\\/:*?"<>|\t\r\n\x00'})


def folder_name(row: LeadRow) -> str:
    """The lead's folder in the evidence package: ``线索-000123-机构名``, safe on every file system."""
    name = "".join(ch for ch in (row.name or "").translate(_UNSAFE) if ch.isprintable()).strip(" ._")
    name = "_".join(name.split())[:40]
    return f"线索-{row.id:06d}" + (f"-{name}" if name else "")
