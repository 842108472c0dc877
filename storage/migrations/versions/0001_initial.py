"""Initial schema: sources, crawl runs, pages, snapshots, findings, leads.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-25 00:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _is_sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_sources"),
        sa.UniqueConstraint("name", name="uq_sources_name"),
    )

    op.create_table(
        "crawl_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        _timestamp("started_at"),
        _timestamp("finished_at", nullable=True),
        sa.Column("finish_reason", sa.String(255), nullable=True),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("new_findings", sa.Integer(), nullable=False),
        sa.Column("new_leads", sa.Integer(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_crawl_runs"),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.id"], name="fk_crawl_runs_source_id_sources"
        ),
    )
    op.create_index("ix_crawl_runs_source_id", "crawl_runs", ["source_id"])

    # pages.last_snapshot_id and snapshots.page_id point at each other. SQLite
    # accepts a foreign key to a table that does not exist yet but cannot add
    # one later without rebuilding the table, so it gets the key inline; other
    # databases add it once snapshots exists.
    page_last_snapshot_fk = sa.ForeignKeyConstraint(
        ["last_snapshot_id"], ["snapshots.id"], name="fk_pages_last_snapshot_id_snapshots"
    )
    op.create_table(
        "pages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        _timestamp("first_seen"),
        _timestamp("last_seen"),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_snapshot_id", sa.Integer(), nullable=True),
        sa.Column("requested_url", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pages"),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], name="fk_pages_source_id_sources"),
        *([page_last_snapshot_fk] if _is_sqlite() else []),
    )
    op.create_index("ix_pages_url", "pages", ["url"], unique=True)
    op.create_index("ix_pages_source_id", "pages", ["source_id"])

    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("page_id", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        _timestamp("fetched_at"),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("final_url", sa.Text(), nullable=False),
        sa.Column("encoding", sa.String(64), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("image_urls", sa.JSON(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("rules_version", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_snapshots"),
        sa.ForeignKeyConstraint(["page_id"], ["pages.id"], name="fk_snapshots_page_id_pages"),
        sa.UniqueConstraint(
            "page_id", "content_hash", name="uq_snapshots_page_id_content_hash"
        ),
    )
    op.create_index("ix_snapshots_page_id", "snapshots", ["page_id"])
    if not _is_sqlite():
        op.create_foreign_key(
            "fk_pages_last_snapshot_id_snapshots",
            "pages",
            "snapshots",
            ["last_snapshot_id"],
            ["id"],
        )

    op.create_table(
        "leads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        _timestamp("first_seen"),
        _timestamp("last_seen"),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_leads"),
        sa.UniqueConstraint("key", name="uq_leads_key"),
    )
    op.create_index("ix_leads_last_seen", "leads", ["last_seen"])
    op.create_index("ix_leads_severity", "leads", ["severity"])

    op.create_table(
        "findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=True),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("subcategory", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("start_offset", sa.Integer(), nullable=False),
        sa.Column("end_offset", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("normalized", sa.Text(), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("basis", sa.Text(), nullable=False),
        sa.Column("rules_version", sa.String(64), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_findings"),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"], name="fk_findings_snapshot_id_snapshots"
        ),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"], name="fk_findings_lead_id_leads"),
        sa.UniqueConstraint(
            "snapshot_id",
            "rule",
            "start_offset",
            "end_offset",
            name="uq_findings_snapshot_id_rule_start_offset_end_offset",
        ),
    )
    op.create_index("ix_findings_snapshot_id", "findings", ["snapshot_id"])
    op.create_index("ix_findings_lead_id", "findings", ["lead_id"])


def downgrade() -> None:
    op.drop_table("findings")
    op.drop_table("leads")
    if _is_sqlite():
        # Clear the back-reference so dropping snapshots passes the FK check.
        op.execute(sa.text("UPDATE pages SET last_snapshot_id = NULL"))
    else:
        op.drop_constraint("fk_pages_last_snapshot_id_snapshots", "pages", type_="foreignkey")
    op.drop_table("snapshots")
    op.drop_table("pages")
    op.drop_table("crawl_runs")
    op.drop_table("sources")
