"""Alembic environment for xunjian.

Programmatic use (storage.db) passes an open Connection in
``config.attributes["connection"]``. The ``alembic`` command line instead uses
``$XUNJIAN_DB_URL`` or ``sqlalchemy.url`` from alembic.ini.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from storage.db import WRITE_OPTION, create_db_engine
from storage.models import Base

config = context.config
target_metadata = Base.metadata

# Tables owned by other libraries in the same database (APScheduler's job store) are not ours to manage.
FOREIGN_TABLES = {"apscheduler_jobs"}


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "table" and name in FOREIGN_TABLES)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    url = os.environ.get("XUNJIAN_DB_URL") or config.get_main_option("sqlalchemy.url")
    engine = create_db_engine(url)
    try:
        with engine.connect() as own_connection:
            own_connection.execution_options(**{WRITE_OPTION: True})
            _configure(own_connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


def _run_offline() -> None:
    url = os.environ.get("XUNJIAN_DB_URL") or config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        include_object=include_object,
        literal_binds=True,
        render_as_batch=url is not None and url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
