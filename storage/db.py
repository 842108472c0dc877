"""Opening the xunjian database: URL resolution, engine setup and migrations."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from storage.errors import DatabaseUnavailable

DEFAULT_DB_URL = "sqlite:///./data/xunjian.db"
ENV_DB_URL = "XUNJIAN_DB_URL"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Execution option that makes a SQLite transaction take the write lock up front
# (BEGIN IMMEDIATE), so two writers queue on busy_timeout instead of failing.
WRITE_OPTION = "xunjian_write"
# Arbitrary constant key for the PostgreSQL advisory lock held while migrating.
_PG_MIGRATION_LOCK = 0x78756E6A
# Held by every write transaction on PostgreSQL (see Database.transaction).
_PG_WRITE_LOCK = 0x78756E6B

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA synchronous=NORMAL",
)


def resolve_db_url(cli_value: str | None) -> str:
    """The URL from the command line, else ``$XUNJIAN_DB_URL``, else the default."""
    if cli_value:
        return cli_value
    return os.environ.get(ENV_DB_URL) or DEFAULT_DB_URL


def mask_url(url: str | URL) -> str:
    """The URL with any password replaced by ``***``."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return str(url)
    return parsed.render_as_string(hide_password=True)


def first_line(error: BaseException) -> str:
    source = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(source).splitlines() if line.strip()]
    return lines[0] if lines else type(source).__name__


_OS_REASONS = {
    errno.ENOENT: "路径不存在",
    errno.EACCES: "权限不足",
    errno.EPERM: "操作不被允许",
    errno.EROFS: "只读文件系统",
    errno.ENOSPC: "磁盘空间不足",
    errno.ENOTDIR: "路径中有一段不是目录",
}


def _os_reason(error: OSError) -> str:
    if error.errno in _OS_REASONS:
        return _OS_REASONS[error.errno]
    return error.strerror or type(error).__name__


def _unavailable(url: str | URL, reason: str) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"无法打开数据库 {mask_url(url)}：{reason}")


@dataclass
class Database:
    url: str
    engine: Engine
    path: Path | None = None
    _sessions: sessionmaker[Session] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        """A new Session; use it as a context manager."""
        return self._sessions()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A Session inside one write transaction, committed on success.

        Writers take turns: SQLite's ``BEGIN IMMEDIATE`` and, on PostgreSQL, a transaction-level
        advisory lock. Upserts are select-then-insert and grouping reads the leads it extends, so two
        crawl processes (or machines) writing at once would otherwise race: both create the same
        source or the same lead. Write transactions are short (one batch of pages), so the wait is too.
        """
        with self._sessions() as session, session.begin():
            connection = session.connection(execution_options={WRITE_OPTION: True})
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_WRITE_LOCK})")
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().absolute()


def _check_sqlite_directory(url: URL, path: Path) -> None:
    """Create the parent directory of a SQLite file (0700: it holds personal data) and prove it is writable."""
    parent = path.absolute().parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise _unavailable(url, f"{existing} 不是目录，无法存放数据库文件")
    try:
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise _unavailable(url, f"无法创建目录 {parent}（{_os_reason(error)}）") from error
    if path.exists() and not path.is_file():
        raise _unavailable(url, f"{path} 已存在但不是文件")
    try:
        with tempfile.TemporaryFile(dir=parent, prefix=".xunjian-probe-"):
            pass
    except OSError as error:
        raise _unavailable(url, f"目录 {parent} 不可写（{_os_reason(error)}）") from error


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (see _on_begin) instead of pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in _SQLITE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(WRITE_OPTION)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_db_engine(url: str | URL) -> Engine:
    """An Engine for ``url`` with the SQLite pragmas installed."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError as error:
        raise DatabaseUnavailable(f"无法解析数据库地址 {url!s}：{first_line(error)}") from error
    try:
        engine = create_engine(parsed)
    except NoSuchModuleError as error:
        raise _unavailable(parsed, f"不支持的数据库类型 {parsed.drivername}") from error
    except ImportError as error:
        raise _unavailable(parsed, f"缺少数据库驱动（{first_line(error)}）") from error
    except ArgumentError as error:
        raise _unavailable(parsed, first_line(error)) from error
    if parsed.get_backend_name() == "sqlite":
        _install_sqlite_hooks(engine)
    elif parsed.get_backend_name() == "postgresql":
        _install_postgresql_hooks(engine)
    return engine


def _install_postgresql_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # JIT compilation costs more than it saves on xunjian's short queries (the daily list took
        # 0.35-0.7 s with it, 0.25-0.3 s without).
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SET jit = off")
        finally:
            cursor.close()
        dbapi_connection.commit()


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration revision shipped with this package."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise DatabaseUnavailable(f"迁移目录 {MIGRATIONS_DIR} 中没有任何迁移脚本")
    return head


def _upgrade_engine(engine: Engine) -> None:
    url = engine.url
    try:
        with engine.connect() as connection:
            connection = connection.execution_options(**{WRITE_OPTION: True})
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                    )
                command.upgrade(alembic_config(connection), "head")
    except CommandError as error:
        raise _unavailable(url, f"数据库结构升级失败（{first_line(error)}）") from error
    except DBAPIError as error:
        raise _unavailable(url, f"数据库结构升级失败（{first_line(error)}）") from error


def _current_revision_engine(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _probe(engine: Engine) -> None:
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except DBAPIError as error:
        raise _unavailable(engine.url, first_line(error)) from error


def open_database(url: str, *, upgrade: bool = True) -> Database:
    """Open (and by default migrate to the newest schema) the database at ``url``.

    Raises DatabaseUnavailable with a one-line message when the location is not
    usable, the server cannot be reached or the migration fails.
    """
    engine = create_db_engine(url)
    path = _sqlite_file(engine.url) if engine.url.get_backend_name() == "sqlite" else None
    try:
        if path is not None:
            _check_sqlite_directory(engine.url, path)
        _probe(engine)
        if upgrade:
            _upgrade_engine(engine)
    except BaseException:
        engine.dispose()
        raise
    return Database(url=url, engine=engine, path=path)


def upgrade(url: str) -> str:
    """Migrate ``url`` to the newest schema; returns the revision now in place."""
    database = open_database(url, upgrade=True)
    try:
        revision = _current_revision_engine(database.engine)
    finally:
        database.dispose()
    return revision or ""


def current_revision(url: str) -> str | None:
    """The schema revision recorded in the database, or None if never migrated."""
    database = open_database(url, upgrade=False)
    try:
        return _current_revision_engine(database.engine)
    except DBAPIError as error:
        raise _unavailable(url, f"无法读取数据库结构版本（{first_line(error)}）") from error
    finally:
        database.dispose()
