"""Reading crawl history back: runs per source, and the scheduler's next run times.

The scheduler's jobs live in APScheduler's own ``apscheduler_jobs`` table in the same database;
``next_run_times`` reads only its ``id`` and ``next_run_time`` columns (a UNIX timestamp), so no
scheduler needs to be running to answer ``xunjian status``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import MetaData, Table, inspect, select

from storage.db import Database
from storage.models import CrawlRun, Source

JOBS_TABLE = "apscheduler_jobs"
ERROR_PREFIX = "xunjian/errors/"


@dataclass
class RunView:
    id: int
    source: str
    started_at: datetime
    finished_at: datetime | None
    finish_reason: str | None
    pages: int
    errors: int
    new_findings: int
    new_leads: int
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def errors_by_kind(self) -> dict[str, int]:
        return {
            key[len(ERROR_PREFIX):]: int(value)
            for key, value in sorted(self.stats.items())
            if key.startswith(ERROR_PREFIX) and isinstance(value, (int, float))
        }


def _view(run: CrawlRun, name: str) -> RunView:
    return RunView(run.id, name, run.started_at, run.finished_at, run.finish_reason, run.pages,
                   run.errors, run.new_findings, run.new_leads, dict(run.stats or {}))


def list_runs(db: Database, source: str | None = None, limit: int = 20) -> list[RunView]:
    """The newest ``limit`` runs (of ``source`` if given), newest first."""
    query = select(CrawlRun, Source.name).join(Source, Source.id == CrawlRun.source_id)
    if source is not None:
        query = query.where(Source.name == source)
    query = query.order_by(CrawlRun.started_at.desc(), CrawlRun.id.desc()).limit(limit)
    with db.session() as session:
        return [_view(run, name) for run, name in session.execute(query)]


def runs_by_source(db: Database, per_source: int = 6) -> dict[str, list[RunView]]:
    """For every source with runs: its newest ``per_source`` runs, newest first."""
    result: dict[str, list[RunView]] = {}
    with db.session() as session:
        names = session.scalars(select(Source.name).order_by(Source.name)).all()
    for name in names:
        runs = list_runs(db, name, per_source)
        if runs:
            result[name] = runs
    return result


def runs_since(db: Database, source: str, since: datetime) -> list[RunView]:
    """Runs of ``source`` started at or after ``since``, oldest first."""
    query = (
        select(CrawlRun, Source.name)
        .join(Source, Source.id == CrawlRun.source_id)
        .where(Source.name == source, CrawlRun.started_at >= since)
        .order_by(CrawlRun.started_at, CrawlRun.id)
    )
    with db.session() as session:
        return [_view(run, name) for run, name in session.execute(query)]


def next_run_times(db: Database) -> dict[str, datetime | None]:
    """Job id -> next run time (aware UTC; None when paused) from APScheduler's job table."""
    if not inspect(db.engine).has_table(JOBS_TABLE):
        return {}
    table = Table(JOBS_TABLE, MetaData(), autoload_with=db.engine)
    with db.engine.connect() as connection:
        rows = connection.execute(select(table.c.id, table.c.next_run_time)).all()
    return {
        job_id: datetime.fromtimestamp(float(stamp), timezone.utc) if stamp is not None else None
        for job_id, stamp in rows
    }
