"""Opening, locating and migrating storage databases against real SQLite (and PostgreSQL when set).

Covers schema creation and SQLite pragmas, Alembic upgrades and downgrades, database URL
resolution, and the one-line errors for unusable paths, bad URLs and unreachable servers.
The ``db`` fixture and record helpers come from tests.test_storage.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from storage.db import (
    DEFAULT_DB_URL,
    Database,
    alembic_config,
    current_revision,
    head_revision,
    open_database,
    resolve_db_url,
    upgrade,
)
from storage.errors import DatabaseUnavailable
from storage.models import Base
from storage.repository import store_batch
from tests.test_storage import counts, db_fixture, db_url_fixture, page  # noqa: F401 - fixtures

TABLES = {"sources", "crawl_runs", "pages", "snapshots", "findings", "leads"}


# ---------------------------------------------------------------- opening and migrating


def test_open_database_creates_directory_schema_and_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "x.db"
    database = open_database(f"sqlite:///{path}")
    try:
        assert path.is_file()
        assert database.path == path
        assert TABLES <= set(inspect(database.engine).get_table_names())
        with database.engine.connect() as connection:
            pragmas = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
        assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000,
                           "synchronous": 1}
    finally:
        database.dispose()
    assert current_revision(f"sqlite:///{path}") == head_revision()


def test_open_without_upgrade_leaves_schema_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bare.db'}"
    database = open_database(url, upgrade=False)
    try:
        assert set(inspect(database.engine).get_table_names()) == set()
    finally:
        database.dispose()
    assert current_revision(url) is None
    assert upgrade(url) == head_revision()
    assert current_revision(url) == head_revision()


def test_migration_matches_models_and_downgrades(db: Database) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, Base.metadata)
        # APScheduler creates and owns its job table (crawler.scheduler); it is not part of the models.
        assert [d for d in diffs if not (d[0] == "remove_table" and d[1].name == "apscheduler_jobs")] == []
    with db.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert not TABLES & set(inspect(db.engine).get_table_names())
    assert current_revision(db.url) is None
    assert upgrade(db.url) == head_revision()
    assert TABLES <= set(inspect(db.engine).get_table_names())


def test_upgrade_twice_is_harmless(db: Database) -> None:
    store_batch(db, None, [page("https://a.example/1", "小升初 冲刺")])
    assert upgrade(db.url) == head_revision()
    assert counts(db)["pages"] == 1


def test_parent_is_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    url = f"sqlite:///{blocker / 'sub' / 'x.db'}"
    with pytest.raises(DatabaseUnavailable) as caught:
        open_database(url)
    message = str(caught.value)
    assert str(blocker) in message and "不是目录" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("url", "named"),
    [
        # Root ignores permission bits, so use kernel file systems nobody can create files in.
        ("sqlite:////proc/xunjian-test/x.db", "/proc/xunjian-test"),
        ("sqlite:////sys/xunjian-test.db", "/sys"),
    ],
)
def test_unwritable_directory(url: str, named: str) -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        open_database(url)
    message = str(caught.value)
    assert message.startswith(f"无法打开数据库 {url}：")
    assert named in message
    assert "\n" not in message


def test_database_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable, match=f"{tmp_path} 已存在但不是文件"):
        open_database(f"sqlite:///{tmp_path}")


def test_unreachable_server_masks_password() -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        open_database("postgresql+psycopg://inspector:hunter2@127.0.0.1:1/xunjian")
    message = str(caught.value)
    assert "127.0.0.1:1/xunjian" in message
    assert "hunter2" not in message and "***" in message
    assert "\n" not in message


def test_bad_url_is_reported() -> None:
    with pytest.raises(DatabaseUnavailable, match="无法解析数据库地址 not a url"):
        open_database("not a url")


def test_resolve_db_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XUNJIAN_DB_URL", raising=False)
    assert resolve_db_url(None) == DEFAULT_DB_URL == "sqlite:///./data/xunjian.db"
    monkeypatch.setenv("XUNJIAN_DB_URL", "sqlite:///env.db")
    assert resolve_db_url(None) == "sqlite:///env.db"
    assert resolve_db_url("sqlite:///cli.db") == "sqlite:///cli.db"
