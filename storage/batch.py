"""Storing a batch of page records with a few set-based statements instead of per-row ORM work.

Records whose (url, content_hash) is new are stored in runs: one query for the
run's existing pages, bulk inserts (insertmanyvalues) for new pages, snapshots
and findings, one bulk update for the pages' seen times, and the grouping of
``storage.batch_grouping``. A record whose snapshot is already stored (the same
content fetched again) goes through the writer's own per-record path, after
everything before it has been written, so the order of effects is that of the
records.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timezone
from typing import Any, Protocol

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from storage.batch_grouping import BatchGrouper, Placing
from storage.bulk import RecordFailed, chunks, execute_rows
from storage.evidence import evidence_rows
from storage.models import Evidence, Page, Snapshot
from storage.records import BatchResult, PageRecord

_PAGE = Page.__table__
_SNAPSHOT = Snapshot.__table__
_EVIDENCE = Evidence.__table__
_PAGE_FIELDS = ("first_seen", "last_seen", "last_status", "requested_url", "last_snapshot_id")

# Built once: a statement built per batch costs its construction and its cache key every time, and an
# IN list of literal values is coerced value by value. Expanding parameters render the same SQL.
_URLS = bindparam("urls", expanding=True)
_PAGE_IDS = bindparam("page_ids", expanding=True)
_PAGE_STATES = select(_PAGE.c.id, _PAGE.c.url, *(_PAGE.c[name] for name in _PAGE_FIELDS)).where(
    _PAGE.c.url.in_(_URLS))
_PAGE_IDS_BY_URL = select(_PAGE.c.url, _PAGE.c.id).where(_PAGE.c.url.in_(_URLS))
_STORED_SNAPSHOTS = select(_SNAPSHOT.c.page_id, _SNAPSHOT.c.content_hash).where(
    _SNAPSHOT.c.page_id.in_(_PAGE_IDS), _SNAPSHOT.c.content_hash.in_(bindparam("hashes", expanding=True)))
_SNAPSHOT_IDS = select(_SNAPSHOT.c.id, _SNAPSHOT.c.page_id, _SNAPSHOT.c.content_hash).where(
    _SNAPSHOT.c.page_id.in_(_PAGE_IDS))
_INSERT_PAGE = insert(_PAGE)
_INSERT_SNAPSHOT = insert(_SNAPSHOT)
_INSERT_EVIDENCE = insert(_EVIDENCE)
_UPDATE_PAGE = update(_PAGE).where(_PAGE.c.id == bindparam("page_id")).values(
    {name: bindparam(f"new_{name}") for name in _PAGE_FIELDS})
_LINK_SNAPSHOT = update(_PAGE).where(_PAGE.c.id == bindparam("page_id")).values(
    last_snapshot_id=bindparam("new_last_snapshot_id"))


class Writer(Protocol):
    result: BatchResult

    def source_id(self, name: str) -> int: ...

    def store(self, record: PageRecord) -> None: ...


def _guard(url: str, action: Callable[[], Any]) -> Any:
    try:
        return action()
    except (StatementError, OverflowError) as error:
        raise RecordFailed(url, error) from error


def store_records(session: Session, writer: Writer, records: list[PageRecord],
                  lead_categories: frozenset[str]) -> None:
    """Store ``records`` in order: runs of new content in bulk, repeats through ``writer.store``."""
    stored, states = _stored_pairs(session, records)
    # The pages as loaded hold until the first write: the first run of new content reuses them.
    preloaded: dict[str, dict[str, Any]] | None = states
    run: list[PageRecord] = []
    for record in records:
        key = (record.url, record.content_hash)
        if key not in stored:
            stored.add(key)
            run.append(record)
            continue
        if run:
            store_new(session, writer, run, lead_categories, preloaded)
            run = []
            # The bulk path changed rows behind the ORM's back; reload whatever the writer reads next.
            session.flush()
            session.expire_all()
        preloaded = None
        _guard(record.url, lambda record=record: writer.store(record))
    if run:
        store_new(session, writer, run, lead_categories, preloaded)


def _stored_pairs(session: Session,
                  records: list[PageRecord]) -> tuple[set[tuple[str, str]], dict[str, dict[str, Any]]]:
    """The (url, content_hash) pairs of ``records`` already stored, and the stored pages by URL."""
    urls = sorted({record.url for record in records})
    states: dict[str, dict[str, Any]] = {}
    for part in chunks(urls):
        for row in session.execute(_PAGE_STATES, {"urls": part}):
            states[row.url] = dict(row._mapping)
    found: set[tuple[str, str]] = set()
    if not states:
        return found, states
    page_urls = {state["id"]: url for url, state in states.items()}
    hashes = sorted({record.content_hash for record in records if record.url in states})
    for part in chunks(sorted(page_urls)):
        for page_id, content_hash in session.execute(_STORED_SNAPSHOTS, {"page_ids": part, "hashes": hashes}):
            found.add((page_urls[page_id], content_hash))
    return found, states


def store_new(session: Session, writer: Writer, records: list[PageRecord], lead_categories: frozenset[str],
              preloaded: dict[str, dict[str, Any]] | None = None) -> None:
    """Store records whose snapshots are all new (distinct (url, content_hash) pairs, none stored).

    ``preloaded``: the stored pages of these records' URLs as they are now (by URL), if just loaded.
    """
    session.flush()
    result = writer.result
    pages, latest, inserted = _pages(session, writer, records, preloaded)
    snapshot_ids = _snapshots(session, records, pages)
    result.new_snapshots += len(snapshot_ids)
    for record, snapshot_id, is_latest in zip(records, snapshot_ids, latest):
        if is_latest:
            pages[record.url]["last_snapshot_id"] = snapshot_id
    # The snapshots are new, so they have no evidence yet: every record's rows go in one INSERT.
    evidence: list[dict[str, Any]] = []
    owners: list[str] = []
    for record, snapshot_id in zip(records, snapshot_ids):
        if record.evidence:
            rows = evidence_rows(snapshot_id, record.evidence, set())
            evidence.extend(rows)
            owners.extend([record.url] * len(rows))
    if evidence:
        execute_rows(session, _INSERT_EVIDENCE, _EVIDENCE, evidence, owners)
    # A page inserted by this run already holds its final seen times: only its snapshot is new.
    known = [url for url in pages if url not in inserted]
    if known:
        changed = [{"page_id": pages[url]["id"], **{f"new_{name}": pages[url][name] for name in _PAGE_FIELDS}}
                   for url in known]
        execute_rows(session, _UPDATE_PAGE, _PAGE, changed, known)
    fresh = [url for url in pages if url in inserted]
    if fresh:
        linked = [{"page_id": pages[url]["id"], "new_last_snapshot_id": pages[url]["last_snapshot_id"]}
                  for url in fresh]
        execute_rows(session, _LINK_SNAPSHOT, _PAGE, linked, fresh)
    work: list[tuple[PageRecord, list[dict[str, Any]], Placing | None]] = []
    for record, snapshot_id in zip(records, snapshot_ids):
        rows = _finding_rows(record, snapshot_id)
        result.new_findings += len(rows)
        grouped = bool({row["category"] for row in rows} & lead_categories)
        placing = Placing(
            url=record.url, page_id=pages[record.url]["id"], title=record.title, text=record.text,
            fields=record.fields, fetched_at=record.fetched_at.astimezone(timezone.utc),
            score=float(record.score), findings=rows,
        ) if grouped else None
        work.append((record, rows, placing))
    grouper = BatchGrouper(session, [placing for _, _, placing in work if placing is not None])
    for record, rows, placing in work:
        if placing is None:
            grouper.add_findings(record.url, rows)
        else:
            _guard(record.url, lambda p=placing: grouper.place(p))
    grouper.flush()
    result.new_leads += grouper.new_leads



def _pages(session: Session, writer: Writer, records: list[PageRecord],
           preloaded: dict[str, dict[str, Any]] | None) -> tuple[dict[str, dict[str, Any]], list[bool], set[str]]:
    """Every page of the run (loaded or inserted) with its seen times after the run, which
    records are their page's latest fetch at their turn, and the URLs of the pages inserted."""
    urls = list(dict.fromkeys(record.url for record in records))
    pages: dict[str, dict[str, Any]] = {}
    if preloaded is not None:
        pages = {url: dict(preloaded[url]) for url in urls if url in preloaded}
    else:
        for part in chunks(urls):
            for row in session.execute(_PAGE_STATES, {"urls": part}):
                pages[row.url] = dict(row._mapping)
    new: list[dict[str, Any]] = []
    latest: list[bool] = []
    for record in records:
        fetched_at = record.fetched_at.astimezone(timezone.utc)
        state = pages.get(record.url)
        if state is None:
            state = pages[record.url] = {
                "id": None, "url": record.url, "source_id": writer.source_id(record.source),
                "first_seen": fetched_at, "last_seen": fetched_at, "last_status": record.status,
                "requested_url": record.requested_url, "last_snapshot_id": None,
            }
            new.append(state)
            writer.result.new_pages += 1
        else:
            state["first_seen"] = min(state["first_seen"], fetched_at)
            if fetched_at >= state["last_seen"]:
                state["last_seen"] = fetched_at
                state["last_status"] = record.status
                state["requested_url"] = record.requested_url
        latest.append(fetched_at >= state["last_seen"])
    if new:
        rows = [{key: value for key, value in state.items() if key not in ("id", "last_snapshot_id")}
                for state in new]
        execute_rows(session, _INSERT_PAGE, _PAGE, rows, [state["url"] for state in new])
        # Read the ids back by url (unique): on SQLite, RETURNING in parameter order means a statement per row.
        ids: dict[str, int] = {}
        for part in chunks([state["url"] for state in new]):
            ids.update(session.execute(_PAGE_IDS_BY_URL, {"urls": part}).all())
        for state in new:
            state["id"] = ids[state["url"]]
    return pages, latest, {state["url"] for state in new}


def _snapshots(session: Session, records: list[PageRecord], pages: dict[str, dict[str, Any]]) -> list[int]:
    rows = [{
        "page_id": pages[record.url]["id"],
        "content_hash": record.content_hash,
        "fetched_at": record.fetched_at.astimezone(timezone.utc),
        "status": record.status,
        "final_url": record.final_url,
        "encoding": record.encoding,
        "title": record.title,
        "text": record.text,
        "headers": dict(record.headers),
        "fields": {key: list(values) for key, values in record.fields.items()},
        "image_urls": list(record.image_urls),
        "categories": list(record.categories),
        "score": float(record.score),
        "rules_version": record.rules_version,
    } for record in records]
    execute_rows(session, _INSERT_SNAPSHOT, _SNAPSHOT, rows, [record.url for record in records])
    # (page_id, content_hash) is unique and every pair of the run is new: read the ids back by it.
    ids: dict[tuple[int, str], int] = {}
    for part in chunks(sorted({row["page_id"] for row in rows})):
        for snapshot_id, page_id, content_hash in session.execute(_SNAPSHOT_IDS, {"page_ids": part}):
            ids[(page_id, content_hash)] = snapshot_id
    return [ids[(row["page_id"], row["content_hash"])] for row in rows]


def _finding_rows(record: PageRecord, snapshot_id: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, int, int]] = set()
    for item in record.findings:
        identity = (item.rule, item.start, item.end)
        if identity in seen:
            continue
        seen.add(identity)
        rows.append({
            "snapshot_id": snapshot_id, "lead_id": None, "category": item.category,
            "subcategory": item.subcategory, "rule": item.rule, "severity": int(item.severity),
            "start_offset": int(item.start), "end_offset": int(item.end), "text": item.text,
            "normalized": item.normalized, "explanation": item.explanation, "basis": item.basis,
            "rules_version": record.rules_version,
        })
    return rows
