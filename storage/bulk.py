"""Bulk statements over many records' rows, with failures traced back to a page URL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

CHUNK = 500
_BIGINT = 2**63


def chunks(values: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    """``values`` in slices small enough for an IN list or a bound-parameter limit."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


class RecordFailed(Exception):
    """A database statement failed on the row of page ``url``."""

    def __init__(self, url: str, error: Exception) -> None:
        super().__init__(url)
        self.url = url
        self.error = error


def _culprit(table: Table, rows: Sequence[dict[str, Any]], owners: Sequence[str]) -> str:
    """The page whose row the database most likely refused (NULL in NOT NULL, too long, too big)."""
    for row, owner in zip(rows, owners):
        for column in table.columns:
            value = row.get(column.key)
            if value is None and column.key in row and not column.nullable:
                return owner
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _BIGINT:
                return owner
            length = getattr(column.type, "length", None)
            if isinstance(value, str) and length and len(value) > length:
                return owner
    return owners[0]


def execute_rows(session: Session, statement: Any, table: Table, rows: list[dict[str, Any]],
                 owners: Sequence[str]) -> Any:
    """Run ``statement`` for all ``rows`` at once; a failure names the page of the bad row."""
    try:
        return session.execute(statement, rows)
    except (StatementError, OverflowError) as error:
        raise RecordFailed(_culprit(table, rows, owners), error) from error
