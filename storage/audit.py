"""The append-only audit trail of leads.

Every change to a lead (state, merge, split, note, export, reopen) adds one
``AuditEvent`` row. Nothing here updates or deletes a row: the ORM refuses it
(``storage.models`` guards) and so does the database (triggers created by
migrations 0002_lead_workflow and 0004_audit_no_replace).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.errors import StorageError
from storage.models import AUDIT_IMMUTABLE_MESSAGE, AuditEvent, AuditImmutableError, utcnow

__all__ = [
    "ACTION_NAMES",
    "AUDIT_IMMUTABLE_MESSAGE",
    "AuditImmutableError",
    "AuditRow",
    "SYSTEM_ACTOR",
    "history",
    "record",
    "check_actor",
]

SYSTEM_ACTOR = "system"
ACTOR_LENGTH = 128
ACTION_NAMES = {
    "create": "新建",
    "start": "开始核查",
    "confirm": "确认",
    "dismiss": "排除",
    "refer": "移交执法",
    "close": "结案",
    "reopen": "重新打开",
    "note": "备注",
    "merge": "合并",
    "split": "拆分",
}


@dataclass(frozen=True)
class AuditRow:
    id: int
    lead_id: int
    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    reason: str
    details: dict[str, Any]


def check_actor(actor: str | None) -> str:
    """The actor name, stripped; refuses an empty or over-long one."""
    name = (actor or "").strip()
    if not name:
        raise StorageError("缺少操作人：请用 --by 写明操作人姓名")
    if len(name) > ACTOR_LENGTH:
        raise StorageError(f"操作人姓名过长（{len(name)} 个字符，最多 {ACTOR_LENGTH} 个）：{name[:40]}…")
    return name


def values(
    lead_id: int,
    action: str,
    actor: str,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    reason: str = "",
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The columns of one checked audit row for ``lead_id`` (for ``record`` or a bulk INSERT)."""
    if action not in ACTION_NAMES:
        raise StorageError(f"未知的审计动作 {action!r}")
    return {
        "lead_id": lead_id,
        "at": at or utcnow(),
        "actor": check_actor(actor),
        "action": action,
        "from_status": from_status,
        "to_status": to_status,
        "reason": (reason or "").strip(),
        "details": dict(details or {}),
    }


def record(session: Session, lead_id: int, action: str, actor: str, **fields: Any) -> AuditEvent:
    """Append one audit row for ``lead_id`` inside the caller's transaction (``fields`` as for ``values``)."""
    event = AuditEvent(**values(lead_id, action, actor, **fields))
    session.add(event)
    return event


def history(session: Session, lead_id: int) -> list[AuditRow]:
    """Every audit row of ``lead_id``, oldest first."""
    rows = session.scalars(
        select(AuditEvent).where(AuditEvent.lead_id == lead_id).order_by(AuditEvent.at, AuditEvent.id)
    )
    return [
        AuditRow(
            id=row.id,
            lead_id=row.lead_id,
            at=row.at,
            actor=row.actor,
            action=row.action,
            from_status=row.from_status,
            to_status=row.to_status,
            reason=row.reason,
            details=dict(row.details),
        )
        for row in rows
    ]
