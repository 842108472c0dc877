"""Audit trail: refuse ``REPLACE INTO`` / ``INSERT OR REPLACE`` of an existing ``lead_audit`` row.

Revision ID: 0004_audit_no_replace
Revises: 0003_evidence
Create Date: 2026-12-01 00:00:00+00:00

SQLite resolves a REPLACE conflict by deleting the old row without firing DELETE triggers (unless
``recursive_triggers`` is on, which a hand-opened connection never has), so the triggers of 0002
let a row be rewritten. A BEFORE INSERT trigger now refuses any insert whose id already exists.
In that trigger NEW.id is -1 when SQLite picks the id itself, so an AFTER INSERT trigger keeps ids
positive: otherwise one row inserted with id -1 would block every later audit row.

PostgreSQL needs nothing new: it has no REPLACE, and ``INSERT ... ON CONFLICT DO UPDATE`` and
``MERGE`` fire the row-level UPDATE trigger of 0002, which refuses them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_audit_no_replace"
down_revision: str | Sequence[str] | None = "0003_evidence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT_MESSAGE = "审计记录只能追加，不能修改或删除（lead_audit）"

_SQLITE_TRIGGERS = {
    "lead_audit_no_replace": f"""CREATE TRIGGER lead_audit_no_replace BEFORE INSERT ON lead_audit
    WHEN EXISTS (SELECT 1 FROM lead_audit WHERE id = NEW.id)
    BEGIN SELECT RAISE(ABORT, '{AUDIT_MESSAGE}'); END""",
    "lead_audit_positive_id": """CREATE TRIGGER lead_audit_positive_id AFTER INSERT ON lead_audit
    WHEN NEW.id <= 0
    BEGIN SELECT RAISE(ABORT, '审计记录编号必须为正整数（lead_audit）'); END""",
}


def _is_sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def upgrade() -> None:
    if _is_sqlite():
        for statement in _SQLITE_TRIGGERS.values():
            op.execute(sa.text(statement))


def downgrade() -> None:
    if _is_sqlite():
        for name in _SQLITE_TRIGGERS:
            op.execute(sa.text(f"DROP TRIGGER IF EXISTS {name}"))
