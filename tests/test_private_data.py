"""Private data stays private (issue 14): the audit trail cannot be rewritten by an insert, the database
password never reaches a command line, a log or the screen, the files xunjian writes are its user's
only, and a hostile sources file on ``schedule reload`` leaves the running scheduler and its jobs alone.

Real SQLite, real subprocesses (the ``xunjian`` CLI, the scheduler, the crawl child) and the real demo
site; PostgreSQL too when XUNJIAN_TEST_PG_URL is set.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from crawler.crawl_process import Children, spawn_crawl
from crawler.sources import MAX_SOURCES_FILE_BYTES
from storage.db import Database, alembic_config, head_revision, open_database
from storage.models import AuditEvent
from storage.workflow import review
from tests.conftest import board_source, pg_schema_url, run_cli
from tests.test_grouping import PG_URL, db  # noqa: F401 - db is a fixture
from tests.test_scheduler import (
    SHANGHAI,
    Scheduler,
    _set_next_run,
    make_scheduler,  # noqa: F401 - a fixture
    wait_for,
)
from tests.test_workflow import one_lead

COLUMNS = "id, lead_id, at, actor, action, from_status, to_status, reason, details"
REWRITTEN = "id, lead_id, at, '改写者', action, from_status, to_status, '改写', details"
REWRITES = {
    "sqlite": [
        f"REPLACE INTO lead_audit ({COLUMNS}) SELECT {REWRITTEN} FROM lead_audit",
        f"INSERT OR REPLACE INTO lead_audit ({COLUMNS}) SELECT {REWRITTEN} FROM lead_audit",
        (f"INSERT INTO lead_audit ({COLUMNS}) SELECT {REWRITTEN} FROM lead_audit WHERE true "
         "ON CONFLICT (id) DO UPDATE SET actor = excluded.actor"),
    ],
    "postgresql": [
        (f"INSERT INTO lead_audit ({COLUMNS}) SELECT {REWRITTEN} FROM lead_audit "
         "ON CONFLICT (id) DO UPDATE SET actor = EXCLUDED.actor, reason = EXCLUDED.reason"),
        ("MERGE INTO lead_audit AS old USING (SELECT id FROM lead_audit) AS new ON old.id = new.id "
         "WHEN MATCHED THEN UPDATE SET actor = '改写者'"),
    ],
}


def audit_rows(database: Database) -> list[tuple[int, str, str]]:
    with database.session() as session:
        return [(r.id, r.actor, r.reason) for r in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


# ---------------------------------------------------------------- the audit trail cannot be replaced


def test_inserts_that_replace_an_audit_row_are_refused(db: Database) -> None:
    one_lead(db)
    before = audit_rows(db)
    for statement in REWRITES[db.engine.dialect.name]:
        with pytest.raises(DBAPIError, match="审计记录只能追加"), db.engine.begin() as connection:
            connection.exec_driver_sql(statement)
        assert audit_rows(db) == before, statement


def test_audit_rows_are_still_appended_after_a_refused_negative_id(db: Database) -> None:
    # SQLite shows NEW.id = -1 to a BEFORE INSERT trigger when it picks the id itself: a stored row
    # -1 would make every later audit row look like a replacement.
    if db.engine.dialect.name != "sqlite":
        pytest.skip("the id seen by a BEFORE INSERT trigger is a SQLite matter")
    lead_id = one_lead(db)
    with pytest.raises(DBAPIError, match="审计记录编号必须为正整数"), db.engine.begin() as connection:
        connection.exec_driver_sql(
            f"INSERT INTO lead_audit ({COLUMNS}) SELECT -1, lead_id, at, actor, action, from_status, "
            "to_status, reason, details FROM lead_audit"
        )
    review(db, lead_id, "start", "张三", "开始核查")
    assert [actor for _, actor, _ in audit_rows(db)] == ["system", "张三"]


def test_db_upgrade_of_an_existing_database_adds_the_guard(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url=url), "0003_evidence")
    upgraded = run_cli("db", "upgrade", "--db", url)
    assert upgraded.code == 0 and head_revision() in upgraded.out, upgraded.err
    database = open_database(url, upgrade=False)  # what `db upgrade` left, nothing more
    try:
        one_lead(database)
        with pytest.raises(DBAPIError, match="审计记录只能追加"), database.engine.begin() as connection:
            connection.exec_driver_sql(REWRITES["sqlite"][0])
    finally:
        database.dispose()


# ---------------------------------------------------------------- the database password stays secret

SECRET = "s3cret-pw-7f2c"
SECRET_URL = f"postgresql+psycopg://xunjian:{SECRET}@db.internal:5432/xunjian"

RECORD_ARGV = textwrap.dedent("""
    import json, os, sys
    with open(os.environ["ARGV_LOG"], "w") as f:
        json.dump({"cmdline": open("/proc/self/cmdline").read().split("\\0"),
                   "db": os.environ.get("XUNJIAN_DB_URL")}, f)
    print("crawl child started")
""")


def test_crawl_child_gets_the_database_url_in_its_environment(tmp_path, monkeypatch, caplog) -> None:
    script, record, data = tmp_path / "child.py", tmp_path / "argv.json", tmp_path / "data"
    script.write_text(RECORD_ARGV)
    monkeypatch.setenv("XUNJIAN_CRAWL_COMMAND", f"{sys.executable} {script}")
    monkeypatch.setenv("ARGV_LOG", str(record))
    caplog.set_level(logging.INFO, logger="xunjian.scheduler")
    assert spawn_crawl("alpha", sources_path="s.toml", db_url=SECRET_URL, data_dir=data, children=Children()) == 0
    seen = json.loads(record.read_text())
    assert seen["db"] == SECRET_URL
    assert "--db" not in seen["cmdline"] and not any(SECRET in arg for arg in seen["cmdline"])
    # A crawl command that cannot start is logged with its command line: still no password.
    monkeypatch.setenv("XUNJIAN_CRAWL_COMMAND", str(tmp_path / "no-such-crawler"))
    assert spawn_crawl("alpha", sources_path="s.toml", db_url=SECRET_URL, data_dir=data, children=Children()) == 127
    assert "无法启动来源 alpha 的抓取进程" in caplog.text and SECRET not in caplog.text
    logs = list((data / "logs").iterdir())
    assert logs and all(SECRET not in path.read_text() for path in logs)


@pytest.mark.skipif(not PG_URL, reason="XUNJIAN_TEST_PG_URL 未设置")
def test_db_upgrade_does_not_echo_the_password() -> None:
    # The test server trusts 127.0.0.1, so any password gets in: enough to see where it is printed.
    with pg_schema_url("xunjian_secret") as url:
        with_password = make_url(url).set(password=SECRET).render_as_string(hide_password=False)
        upgraded = run_cli("db", "upgrade", env={"XUNJIAN_DB_URL": with_password})
    assert upgraded.code == 0, upgraded.err
    assert "***" in upgraded.out and SECRET not in upgraded.out + upgraded.err


# ---------------------------------------------------------------- files are private by default


@contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def test_everything_written_is_private_to_its_user(tmp_path, demo_site) -> None:
    from crawler.daily_file import daily_path
    from crawler.db import database_for
    from storage.runs import list_runs

    sources = tmp_path / "sources.toml"
    sources.write_text(board_source(max_pages=4), encoding="utf-8")
    with umask(0o022):  # the parent's umask a default system gives: 0644 files, 0755 directories
        s = Scheduler(tmp_path, sources, {"XUNJIAN_SCHEDULE_INTERVAL": "1", "XUNJIAN_DEMO_URL": demo_site.url,
                                          "XUNJIAN_DAILY_CRON": "55 23 * * *"})
        del s.env["XUNJIAN_CRAWL_COMMAND"]  # the real crawl child
        s.db_url = f"sqlite:///{s.data / 'xunjian.db'}"
        s.start()
        db = database_for(s.db_url)
        wait_for(lambda: any(r.finished_at for r in list_runs(db, "board")), timeout=120, what="a finished run")
        assert s.stop() == 0
        # Start again with the day's list due (as after downtime): the scheduler writes it at once.
        del s.env["XUNJIAN_SCHEDULE_INTERVAL"]
        _set_next_run(s.db_url, "daily-list", datetime.now(SHANGHAI) - timedelta(minutes=1))
        s.start()
        daily = daily_path(s.data, datetime.now(SHANGHAI).date())
        wait_for(daily.exists, what="the daily list")
        assert s.stop() == 0
        exported = run_cli("export", "--status", "all", "--out", str(tmp_path / "export"),
                           "--data-dir", str(s.data), "--db", s.db_url)
        assert exported.code == 0, exported.err

    written = [p for root in (s.data, tmp_path / "export") for p in (root, *root.rglob("*"))]
    names = {p.name for p in written}
    assert {"xunjian.db", "scheduler.log", daily.name, "evidence"} <= names
    assert any(n.startswith("crawl-board-") for n in names) and any(n.startswith("scheduled-board-") for n in names)
    assert any(p.suffix == ".png" for p in written) and any(p.suffix == ".xlsx" for p in written)
    shared = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in written
              if p.stat().st_mode & 0o077}
    assert shared == {}


# ---------------------------------------------------------------- hostile sources files


def nested_arrays(path: Path) -> Path:
    path.write_text("x = " + "[" * 100_000 + "]" * 100_000, encoding="utf-8")
    return path


def oversized(path: Path) -> Path:
    path.write_bytes(b"#" * (MAX_SOURCES_FILE_BYTES + 1))
    return path


@pytest.mark.parametrize("hostile, message", [(nested_arrays, "嵌套过深"), (oversized, "文件过大")])
def test_hostile_sources_file_is_one_line(tmp_path, hostile, message) -> None:
    checked = run_cli("sources", "check", str(hostile(tmp_path / "sources.toml")))
    assert checked.code == 2 and checked.err.startswith("错误：") and message in checked.err
    assert len(checked.err.strip().splitlines()) == 1


def test_reload_of_a_hostile_sources_file_keeps_the_old_jobs(make_scheduler) -> None:  # noqa: F811
    s = make_scheduler({"alpha": "0 6 * * *"}).start()
    wait_for(lambda: "crawl:alpha" in s.jobs(), what="initial job")
    before = s.jobs()
    nested_arrays(s.sources)
    assert run_cli("schedule", "reload", "--data-dir", str(s.data)).code == 0
    wait_for(lambda: "嵌套过深" in s.output(), what="the reload error")
    oversized(s.sources)
    s.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "文件过大" in s.output(), what="the second reload error")
    assert s.proc.poll() is None and s.jobs() == before
    assert s.output().count("重新加载失败，继续使用原有作业") == 2 and "Traceback" not in s.output()
    s.sources.write_text('[[source]]\nname = "beta"\nkind = "site"\nstart_urls = ["http://127.0.0.1:9/"]\n'
                         'schedule = "0 7 * * *"\n', encoding="utf-8")
    s.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: set(s.jobs()) == {"crawl:beta"}, what="a good reload after the bad ones")
    assert s.stop() == 0
