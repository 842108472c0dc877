"""The review workflow of a lead and its state machine.

    new ──start──> reviewing ──confirm──> confirmed ──refer──> referred ──close──> closed
                       │                                                            │
                       └──dismiss──> dismissed                                      │
    closed / dismissed ──reopen (system: new content)──> reopened ──start──> reviewing
    reopened ──confirm / dismiss──> confirmed / dismissed

``note`` is allowed in every state and changes nothing but the audit trail.
``refer`` is done by the export (``mark_referred``); ``reopen`` by the crawl,
when an advertiser whose lead was closed or dismissed shows new content.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from storage import audit
from storage.db import Database
from storage.errors import StorageError
from storage.models import Lead, utcnow

STATUS_NAMES = {
    "new": "新线索",
    "reviewing": "核查中",
    "confirmed": "已确认",
    "dismissed": "已排除",
    "referred": "已移交",
    "closed": "已结案",
    "reopened": "重新打开",
    "merged": "已合并",
}

# action -> (states it may start from, state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "start": (frozenset({"new", "reopened"}), "reviewing"),
    "confirm": (frozenset({"reviewing", "reopened"}), "confirmed"),
    "dismiss": (frozenset({"reviewing", "reopened"}), "dismissed"),
    "refer": (frozenset({"confirmed"}), "referred"),
    "close": (frozenset({"referred"}), "closed"),
    "reopen": (frozenset({"closed", "dismissed"}), "reopened"),
}
HUMAN_ACTIONS = ("start", "confirm", "dismiss", "close", "note")
# States a closed case can come back from when its advertiser shows new content.
REOPENABLE = TRANSITIONS["reopen"][0]


class LeadNotFound(StorageError):
    """No lead with that id."""


class WorkflowError(StorageError):
    """A transition the state machine does not allow, or a lead that was merged away."""


def status_name(status: str) -> str:
    return STATUS_NAMES.get(status, status)


def allowed_actions(status: str) -> list[str]:
    """Actions that may be applied to a lead in ``status``, in workflow order."""
    if status == "merged":
        return []
    return [action for action, (sources, _) in TRANSITIONS.items() if status in sources] + ["note"]


def get_lead(session: Session, lead_id: int, *, active: bool = True) -> Lead:
    """The lead ``lead_id``; with ``active``, refuse one that was merged into another."""
    lead = session.get(Lead, lead_id)
    if lead is None:
        raise LeadNotFound(f"找不到编号为 {lead_id} 的线索")
    if active and lead.merged_into_id is not None:
        raise WorkflowError(
            f"线索 {lead_id} 已并入线索 {lead.merged_into_id}，请对线索 {lead.merged_into_id} 操作"
        )
    return lead


def _refusal(lead: Lead, action: str) -> WorkflowError:
    allowed = [a for a in allowed_actions(lead.status) if a != "note"]
    options = "、".join(audit.ACTION_NAMES[a] for a in allowed) if allowed else "仅可添加备注"
    return WorkflowError(
        f"线索 {lead.id} 当前状态为“{status_name(lead.status)}”，不能“{audit.ACTION_NAMES[action]}”；"
        f"当前允许：{options}"
    )


def transition(
    session: Session,
    lead: Lead,
    action: str,
    actor: str,
    reason: str = "",
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Apply ``action`` to ``lead`` and append its audit row, or raise WorkflowError."""
    if action == "note":
        if not (reason or "").strip():
            raise WorkflowError(f"线索 {lead.id} 的备注内容为空")
        audit.record(session, lead.id, "note", actor, from_status=lead.status, to_status=lead.status,
                     reason=reason, details=details, at=at)
        return
    if action not in TRANSITIONS:
        raise WorkflowError(f"未知的操作 {action!r}（可用：{'、'.join(TRANSITIONS)}、note）")
    sources, target = TRANSITIONS[action]
    if lead.merged_into_id is not None or lead.status not in sources:
        raise _refusal(lead, action)
    previous = lead.status
    when = at or utcnow()
    lead.status = target
    lead.status_changed_at = when
    audit.record(session, lead.id, action, actor, from_status=previous, to_status=target,
                 reason=reason, details=details, at=when)


def review(
    db: Database, lead_id: int, action: str, by: str, reason: str = ""
) -> tuple[str, str]:
    """An inspector's action on one lead; returns (old status, new status)."""
    if action not in HUMAN_ACTIONS:
        raise WorkflowError(f"操作 {action!r} 不能由核查人员直接执行（可用：{'、'.join(HUMAN_ACTIONS)}）")
    actor = audit.check_actor(by)
    with db.transaction() as session:
        lead = get_lead(session, lead_id)
        previous = lead.status
        transition(session, lead, action, actor, reason)
        return previous, lead.status


def mark_referred(
    db: Database,
    lead_ids: Iterable[int],
    by: str,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> list[int]:
    """Move confirmed leads to ``referred`` (exported to enforcement), all or none.

    Each lead gets an audit row with ``details`` (for example the export file
    and its SHA-256). Raises WorkflowError naming the first lead that is not
    confirmed, and then changes nothing.
    """
    actor = audit.check_actor(by)
    ids = list(dict.fromkeys(int(i) for i in lead_ids))
    if not ids:
        raise WorkflowError("没有要移交的线索")
    with db.transaction() as session:
        for lead_id in ids:
            transition(session, get_lead(session, lead_id), "refer", actor, reason, details)
    return ids


def reopen_if_closed(
    session: Session, lead: Lead, url: str, fetched_at: datetime, local_time: str
) -> bool:
    """Reopen a closed or dismissed lead: the caller just stored a new snapshot for it.

    Only new content (a snapshot hash not stored before) comes here; the same
    old page fetched again never does, so it cannot reopen anything.
    """
    if lead.status not in REOPENABLE:
        return False
    transition(
        session,
        lead,
        "reopen",
        audit.SYSTEM_ACTOR,
        reason=f"新证据：{url} 于 {local_time} 出现新内容",
        details={"url": url, "fetched_at": fetched_at.isoformat()},
    )
    return True
