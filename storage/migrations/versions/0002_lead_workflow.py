"""Lead workflow: identifiers per lead, manual splits, merges and the audit trail.

Revision ID: 0002_lead_workflow
Revises: 0001_initial
Create Date: 2026-11-25 11:00:00+00:00

``lead_audit`` is append-only: triggers on SQLite and PostgreSQL refuse every
UPDATE and DELETE of its rows (and TRUNCATE on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_lead_workflow"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT_MESSAGE = "审计记录只能追加，不能修改或删除（lead_audit）"

_SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER lead_audit_no_update BEFORE UPDATE ON lead_audit
    BEGIN SELECT RAISE(ABORT, '{AUDIT_MESSAGE}'); END""",
    f"""CREATE TRIGGER lead_audit_no_delete BEFORE DELETE ON lead_audit
    BEGIN SELECT RAISE(ABORT, '{AUDIT_MESSAGE}'); END""",
)

_PG_TRIGGERS = (
    f"""CREATE FUNCTION lead_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{AUDIT_MESSAGE}' USING ERRCODE = 'insufficient_privilege';
    END
    $$""",
    """CREATE TRIGGER lead_audit_no_change BEFORE UPDATE OR DELETE ON lead_audit
    FOR EACH ROW EXECUTE FUNCTION lead_audit_refuse_change()""",
    """CREATE TRIGGER lead_audit_no_truncate BEFORE TRUNCATE ON lead_audit
    FOR EACH STATEMENT EXECUTE FUNCTION lead_audit_refuse_change()""",
)


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _dialect() -> str:
    return op.get_context().dialect.name


def upgrade() -> None:
    with op.batch_alter_table("leads", recreate="never") as batch:
        batch.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
        batch.add_column(_timestamp("status_changed_at", nullable=True))
    op.create_index("ix_leads_merged_into_id", "leads", ["merged_into_id"])

    op.create_table(
        "lead_identifiers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("page_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        _timestamp("first_seen"),
        _timestamp("last_seen"),
        sa.PrimaryKeyConstraint("id", name="pk_lead_identifiers"),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"], name="fk_lead_identifiers_lead_id_leads"),
        sa.ForeignKeyConstraint(["page_id"], ["pages.id"], name="fk_lead_identifiers_page_id_pages"),
        sa.UniqueConstraint(
            "lead_id", "page_id", "kind", "value",
            name="uq_lead_identifiers_lead_id_page_id_kind_value",
        ),
    )
    op.create_index("ix_lead_identifiers_lead_id", "lead_identifiers", ["lead_id"])
    op.create_index("ix_lead_identifiers_page_id", "lead_identifiers", ["page_id"])
    op.create_index("ix_lead_identifiers_kind_value", "lead_identifiers", ["kind", "value"])

    op.create_table(
        "lead_splits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("page_id", sa.Integer(), nullable=False),
        sa.Column("from_lead_id", sa.Integer(), nullable=False),
        sa.Column("to_lead_id", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_lead_splits"),
        sa.ForeignKeyConstraint(["page_id"], ["pages.id"], name="fk_lead_splits_page_id_pages"),
        sa.ForeignKeyConstraint(
            ["from_lead_id"], ["leads.id"], name="fk_lead_splits_from_lead_id_leads"
        ),
        sa.ForeignKeyConstraint(["to_lead_id"], ["leads.id"], name="fk_lead_splits_to_lead_id_leads"),
    )

    op.create_table(
        "lead_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        _timestamp("at"),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_status", sa.String(32), nullable=True),
        sa.Column("to_status", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lead_audit"),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"], name="fk_lead_audit_lead_id_leads"),
    )
    op.create_index("ix_lead_audit_lead_id", "lead_audit", ["lead_id"])
    for statement in _SQLITE_TRIGGERS if _dialect() == "sqlite" else _PG_TRIGGERS:
        op.execute(sa.text(statement))

    _backfill_identifiers()


def _backfill_identifiers() -> None:
    """Give leads stored before this revision the key they were grouped by.

    The old ``leads.key`` is ``kind:value``; it becomes one identifier row per
    page the lead has findings on, so new evidence can still link to them.
    """
    kinds = {"phone": "phone", "wechat": "wechat", "name": "name", "url": "url"}
    stamp = sa.DateTime(timezone=True)
    leads = sa.table(
        "leads", sa.column("id", sa.Integer()), sa.column("key", sa.String()),
        sa.column("first_seen", stamp), sa.column("last_seen", stamp),
    )
    findings = sa.table(
        "findings", sa.column("lead_id", sa.Integer()), sa.column("snapshot_id", sa.Integer())
    )
    snapshots = sa.table("snapshots", sa.column("id", sa.Integer()), sa.column("page_id", sa.Integer()))
    rows = op.get_bind().execute(
        sa.select(leads.c.id, leads.c.key, leads.c.first_seen, leads.c.last_seen, snapshots.c.page_id)
        .join(findings, findings.c.lead_id == leads.c.id)
        .join(snapshots, snapshots.c.id == findings.c.snapshot_id)
        .distinct()
    ).all()
    table = sa.table(
        "lead_identifiers",
        sa.column("lead_id", sa.Integer()),
        sa.column("page_id", sa.Integer()),
        sa.column("kind", sa.String()),
        sa.column("value", sa.String()),
        sa.column("raw", sa.Text()),
        sa.column("first_seen", stamp),
        sa.column("last_seen", stamp),
    )
    values = []
    for lead_id, key, first_seen, last_seen, page_id in rows:
        kind, _, value = str(key).partition(":")
        if kind in kinds and value:
            values.append(
                {
                    "lead_id": lead_id,
                    "page_id": page_id,
                    "kind": kinds[kind],
                    "value": value[:255],
                    "raw": value,
                    "first_seen": first_seen,
                    "last_seen": last_seen,
                }
            )
    if values:
        op.bulk_insert(table, values)


def downgrade() -> None:
    # Dropping the table drops its triggers; the PostgreSQL function goes after.
    op.drop_table("lead_audit")
    if _dialect() != "sqlite":
        op.execute(sa.text("DROP FUNCTION IF EXISTS lead_audit_refuse_change()"))
    op.drop_table("lead_splits")
    op.drop_table("lead_identifiers")
    op.drop_index("ix_leads_merged_into_id", table_name="leads")
    with op.batch_alter_table("leads", recreate="never") as batch:
        batch.drop_column("status_changed_at")
        batch.drop_column("merged_into_id")
