"""Candidate names for fuzzy lead linking, kept in memory and extended incrementally.

Comparing a new page's institution names with every name in the database is what links the board ad,
the institution's own site and its course platform into one lead. Loading every name row for every new
snapshot made that cost grow with the whole database (about 15 pages/s at 50,000 leads). This index
keeps the distinct name values per database in memory, fetches only rows added since the last look
(by primary key), and reloads fully every ``FULL_RELOAD_SECONDS`` so that rows committed late by
another process are not missed for long. It only proposes candidates: the caller confirms every match
against the database, so a stale entry can never link a lead by itself.
"""

from __future__ import annotations

import time
from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.models import LeadIdentifier

FULL_RELOAD_SECONDS = 300.0


class NameIndex:
    def __init__(self) -> None:
        self.values: list[str] = []
        self.by_length: defaultdict[int, list[str]] = defaultdict(list)
        self.known: set[str] = set()
        self._max_id = 0
        self._loaded_at = 0.0

    def refresh(self, session: Session) -> NameIndex:
        self.candidates(session)
        return self

    def candidates(self, session: Session) -> list[str]:
        newest = session.scalar(select(func.max(LeadIdentifier.id))) or 0
        # A database that went backwards (recreated, another schema on the same URL) starts over.
        if newest < self._max_id or time.monotonic() - self._loaded_at > FULL_RELOAD_SECONDS:
            self.__init__()
            self._loaded_at = time.monotonic()
        rows = session.execute(
            select(LeadIdentifier.id, LeadIdentifier.value)
            .where(LeadIdentifier.kind == "name", LeadIdentifier.id > self._max_id)
            .order_by(LeadIdentifier.id)
        ).all()
        for row_id, value in rows:
            self._max_id = max(self._max_id, row_id)
            if value not in self.known:
                self.known.add(value)
                self.values.append(value)
                self.by_length[len(value)].append(value)
        return self.values


_indexes: dict[str, NameIndex] = {}


def name_index(session: Session) -> NameIndex:
    """The refreshed index of the database this session is bound to (possibly a few stale values)."""
    key = session.get_bind().url.render_as_string(hide_password=True)
    index = _indexes.get(key)
    if index is None:
        index = _indexes[key] = NameIndex()
    return index.refresh(session)


def name_candidates(session: Session) -> list[str]:
    """The distinct name values of the database this session is bound to (possibly a few stale ones)."""
    return name_index(session).values
