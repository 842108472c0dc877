"""One institution = one lead: grouping findings by the advertiser's identifiers.

Union-find over identifier keys, done incrementally as snapshots are stored
(``storage.batch_grouping`` applies these rules to a whole batch at once):

- strong keys (phone, WeChat id, QQ, 统一社会信用代码, 办学许可证号, and the page
  URL itself) link a new snapshot to every lead that showed the same value;
- institution names link when their cores (see ``identifiers.name_core``)
  agree by RapidFuzz ratio >= ``NAME_CUTOFF``;
- addresses, prices and teacher names are kept as evidence but never link.

When one snapshot links several leads they are merged into the oldest, with
an audit row naming the linking key. A manual split leaves a ``LeadSplit``
record; grouping never puts the two sides of a split back together.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from storage import audit
from storage.db import Database
from storage.errors import StorageError
from storage.identifiers import KIND_NAMES, STRONG_KINDS
from storage.models import Finding, Lead, LeadIdentifier, LeadSplit, Page, Snapshot, utcnow
from storage.workflow import WorkflowError, get_lead

NAME_CUTOFF = 90
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
KEY_LENGTH = 255


@dataclass
class Link:
    """Why a snapshot belongs to a lead: the key kind, its value and, for names, the score."""

    kind: str
    value: str
    matched: str
    score: float = 100.0

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "matched": self.matched, "score": round(self.score, 1)}

    def describe(self) -> str:
        label = KIND_NAMES.get(self.kind, self.kind)
        if self.kind == "name" and self.value != self.matched:
            return f"{label}“{self.value}”≈“{self.matched}”（相似度 {self.score:.0f}）"
        return f"{label} {self.value}"


def url_value(url: str) -> str:
    """A page URL as an identifier value; a digest when too long for the column."""
    if len(url) <= KEY_LENGTH:
        return url
    return "sha256:" + hashlib.sha256(url.encode("utf-8")).hexdigest()


def root_id(session: Session, lead_id: int) -> int:
    """The lead that ``lead_id`` was (transitively) merged into, or itself."""
    seen: set[int] = set()
    while lead_id not in seen:
        seen.add(lead_id)
        lead = session.get(Lead, lead_id)
        if lead is None or lead.merged_into_id is None:
            return lead_id
        lead_id = lead.merged_into_id
    return lead_id


def separations(session: Session) -> set[frozenset[int]]:
    """Pairs of active leads an inspector split apart (resolved through later merges)."""
    pairs: set[frozenset[int]] = set()
    for from_id, to_id in session.execute(select(LeadSplit.from_lead_id, LeadSplit.to_lead_id)):
        a, b = root_id(session, from_id), root_id(session, to_id)
        if a != b:
            pairs.add(frozenset({a, b}))
    return pairs


def _choose(links: dict[int, list[Link]], apart: set[frozenset[int]]) -> list[int]:
    """Leads to join: strongest link first (own URL, other strong keys, names), never across a split."""
    def rank(lead_id: int) -> tuple[int, int]:
        kinds = {link.kind for link in links[lead_id]}
        return (0 if "url" in kinds else 1 if kinds & STRONG_KINDS else 2, lead_id)

    chosen: list[int] = []
    for lead_id in sorted(links, key=rank):
        if all(frozenset({lead_id, other}) not in apart for other in chosen):
            chosen.append(lead_id)
    return chosen


def unique_key(session: Session, key: str) -> str:
    """``key`` if no lead uses it yet, else ``key#2``, ``key#3`` ..."""
    candidate, n = key[:KEY_LENGTH], 1
    while session.scalar(select(func.count()).select_from(Lead).where(Lead.key == candidate)):
        n += 1
        suffix = f"#{n}"
        candidate = key[: KEY_LENGTH - len(suffix)] + suffix
    return candidate


def _name_rank(raw: str, pages: int) -> tuple[bool, int, int]:
    # A registered name (…有限公司) first, then the name on most pages, then the longer one.
    return ("公司" in raw, pages, len(raw))


def best_name(session: Session, lead_id: int) -> str | None:
    """The name to show for a lead: its registered name, else the one seen on most pages."""
    rows = session.execute(
        select(LeadIdentifier.raw, func.count(LeadIdentifier.page_id.distinct()))
        .where(LeadIdentifier.lead_id == lead_id, LeadIdentifier.kind == "name")
        .group_by(LeadIdentifier.raw)
    ).all()
    return max(rows, key=lambda row: (_name_rank(row[0], row[1]), row[0]))[0] if rows else None


def merge_into(
    session: Session, target: Lead, source: Lead, actor: str, reason: str, details: dict[str, Any]
) -> None:
    """Move ``source``'s findings and identifiers to ``target`` and mark it merged, with audit rows."""
    session.execute(update(Finding).where(Finding.lead_id == source.id).values(lead_id=target.id))
    for row in session.scalars(select(LeadIdentifier).where(LeadIdentifier.lead_id == source.id)).all():
        same = session.scalars(select(LeadIdentifier).where(
            LeadIdentifier.lead_id == target.id, LeadIdentifier.page_id == row.page_id,
            LeadIdentifier.kind == row.kind, LeadIdentifier.value == row.value)).one_or_none()
        if same is None:
            row.lead_id = target.id
        else:
            same.first_seen = min(same.first_seen, row.first_seen)
            same.last_seen = max(same.last_seen, row.last_seen)
            session.delete(row)
    session.flush()
    target.categories = sorted(set(target.categories) | set(source.categories))
    target.severity = max(target.severity, source.severity)
    target.score = max(target.score, source.score)
    target.first_seen = min(target.first_seen, source.first_seen)
    target.last_seen = max(target.last_seen, source.last_seen)
    target.name = best_name(session, target.id) or target.name
    previous = source.status
    source.merged_into_id = target.id
    source.status = "merged"
    source.status_changed_at = utcnow()
    audit.record(session, target.id, "merge", actor, from_status=target.status, to_status=target.status,
                 reason=reason, details={**details, "merged_lead": source.id, "merged_status": previous})
    audit.record(session, source.id, "merge", actor, from_status=previous, to_status="merged",
                 reason=reason, details={**details, "into_lead": target.id})


def recompute(session: Session, lead: Lead) -> None:
    """Rebuild a lead's categories, severity, score and seen times from its findings."""
    rows = session.execute(
        select(Finding.category, Finding.severity, Snapshot.score, Snapshot.fetched_at, Page.last_seen)
        .join(Snapshot, Snapshot.id == Finding.snapshot_id)
        .join(Page, Page.id == Snapshot.page_id)
        .where(Finding.lead_id == lead.id)
    ).all()
    if not rows:
        return
    lead.categories = sorted({row[0] for row in rows})
    lead.severity = max(row[1] for row in rows)
    lead.score = max(float(row[2]) for row in rows)
    lead.first_seen = min(row[3] for row in rows)
    lead.last_seen = max(row[4] for row in rows)


def merge_leads(db: Database, first: int, second: int, by: str, reason: str = "") -> tuple[int, int]:
    """An inspector merges two leads; the older id is kept. Returns (kept, merged away)."""
    actor = audit.check_actor(by)
    if first == second:
        raise WorkflowError(f"不能把线索 {first} 与自身合并")
    with db.transaction() as session:
        leads = sorted((get_lead(session, first), get_lead(session, second)), key=lambda lead: lead.id)
        target, source = leads
        apart = frozenset({target.id, source.id}) in separations(session)
        merge_into(session, target, source, actor, reason or "核查人员手动合并",
                   {"manual": True, "overrides_split": apart})
        return target.id, source.id


def split_page(db: Database, lead_id: int, url: str, by: str, reason: str = "") -> int:
    """Move the findings of page ``url`` out of lead ``lead_id`` into a new lead; returns its id.

    The split is recorded so later crawls keep the two leads apart.
    """
    actor = audit.check_actor(by)
    with db.transaction() as session:
        lead = get_lead(session, lead_id)
        page = session.scalars(select(Page).where(Page.url == url)).one_or_none()
        if page is None:
            raise StorageError(f"数据库中没有网页 {url}")
        on_page = select(Snapshot.id).where(Snapshot.page_id == page.id)
        moving = session.scalars(
            select(Finding).where(Finding.lead_id == lead.id, Finding.snapshot_id.in_(on_page))
        ).all()
        if not moving:
            raise StorageError(f"网页 {url} 不属于线索 {lead.id}")
        if len(moving) == session.scalar(select(func.count()).select_from(Finding).where(Finding.lead_id == lead.id)):
            raise StorageError(f"线索 {lead.id} 只有网页 {url} 这一个来源，无需拆分")
        title = session.scalar(select(Snapshot.title).where(Snapshot.id == moving[0].snapshot_id)) or url
        new = Lead(key=unique_key(session, f"split:{lead.id}:{page.id}"), name=title.strip() or url,
                   status="new", severity=0, score=0.0, categories=[], first_seen=lead.first_seen,
                   last_seen=lead.last_seen, status_changed_at=utcnow())
        session.add(new)
        session.flush()
        for finding in moving:
            finding.lead_id = new.id
        session.execute(update(LeadIdentifier).where(
            LeadIdentifier.lead_id == lead.id, LeadIdentifier.page_id == page.id).values(lead_id=new.id))
        session.flush()
        new.name = best_name(session, new.id) or new.name
        recompute(session, lead)
        recompute(session, new)
        session.add(LeadSplit(page_id=page.id, from_lead_id=lead.id, to_lead_id=new.id, actor=actor))
        details = {"page": url, "findings": len(moving)}
        audit.record(session, lead.id, "split", actor, from_status=lead.status, to_status=lead.status,
                     reason=reason, details={**details, "new_lead": new.id})
        audit.record(session, new.id, "split", actor, to_status="new", reason=reason,
                     details={**details, "from_lead": lead.id})
        return new.id
