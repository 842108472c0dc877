"""One open database per URL for the whole process, shared by pipelines and the CLI."""

from __future__ import annotations

from storage.db import Database, open_database, resolve_db_url

_open: dict[str, Database] = {}


def database_for(url: str | None) -> Database:
    """Open (and migrate) the database once; later calls with the same URL reuse it."""
    resolved = resolve_db_url(url)
    if resolved not in _open:
        _open[resolved] = open_database(resolved, upgrade=True)
    return _open[resolved]


def close_all() -> None:
    for db in _open.values():
        db.dispose()
    _open.clear()
