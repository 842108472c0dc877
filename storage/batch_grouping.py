"""Grouping a whole batch of new snapshots into leads with set-based queries.

The rules of ``storage.grouping`` (strong keys, fuzzy names,
merges into the oldest lead, manual splits respected, closed leads
reopened), applied record by record in batch order, but against an
in-memory picture of the rows that matter to the batch: the leads holding
the batch's strong keys and matching names, the identifier rows of the
batch's pages, lead roots and splits. Those are loaded with a handful of
queries; new identifier rows and their seen-time changes are written in
bulk by ``flush``. A merge (rare) writes everything pending, runs the ORM
``merge_into`` and reloads the picture, so later records see the database
exactly as the one-by-one path would.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy
from rapidfuzz import fuzz, process
from sqlalchemy import Select, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from storage import audit
from storage.grouping import (
    KEY_LENGTH,
    LOCAL_TZ,
    NAME_CUTOFF,
    Link,
    _choose,
    _name_rank,
    merge_into,
    unique_key,
    url_value,
)
from storage.batch_leads import LeadStates
from storage.bulk import chunks, execute_rows
from storage.identifiers import STRONG_KINDS, Identifier, Identifiers, extract_page, lead_key
from storage.models import AuditEvent, Finding, Lead, LeadIdentifier, LeadSplit, utcnow
from storage.name_index import name_index
from storage.workflow import REOPENABLE, reopen_if_closed

_IDENT = LeadIdentifier.__table__
_FINDING = Finding.__table__
_LEAD = Lead.__table__
_AUDIT = AuditEvent.__table__

# Built once (see storage.batch): construction and cache keys are not paid per batch.
_PAGE_ROWS = select(_IDENT.c.id, _IDENT.c.lead_id, _IDENT.c.page_id, _IDENT.c.kind, _IDENT.c.value,
                    _IDENT.c.raw, _IDENT.c.first_seen, _IDENT.c.last_seen).where(
    _IDENT.c.page_id.in_(bindparam("page_ids", expanding=True)))
_SPLITS = select(LeadSplit.__table__.c.from_lead_id, LeadSplit.__table__.c.to_lead_id)
_TAKEN_KEYS = select(_LEAD.c.key).where(_LEAD.c.key.in_(bindparam("keys", expanding=True)))
_NAME_COUNTS = (select(_IDENT.c.lead_id, _IDENT.c.raw, func.count(_IDENT.c.page_id.distinct()))
                .where(_IDENT.c.lead_id.in_(bindparam("lead_ids", expanding=True)), _IDENT.c.kind == "name")
                .group_by(_IDENT.c.lead_id, _IDENT.c.raw))
_INSERT_LEAD = insert(_LEAD)
_INSERT_FINDING = insert(_FINDING)
_INSERT_IDENT = insert(_IDENT)
_INSERT_AUDIT = insert(_AUDIT)
_UPDATE_IDENT = update(_IDENT).where(_IDENT.c.id == bindparam("row_id")).values(
    first_seen=bindparam("new_first"), last_seen=bindparam("new_last"))


@lru_cache(maxsize=64)
def _holders(kinds: tuple[str, ...]) -> Select:
    """Leads holding any of the given values of ``kinds`` (one expanding parameter per kind)."""
    condition = or_(*(and_(_IDENT.c.kind == kind, _IDENT.c.value.in_(bindparam(f"values_{n}", expanding=True)))
                      for n, kind in enumerate(kinds)))
    return select(_IDENT.c.lead_id, _IDENT.c.kind, _IDENT.c.value).where(condition).distinct()


@dataclass
class Placing:
    """One new snapshot to group: its page, texts and finding rows (dicts, lead_id filled in here)."""

    url: str
    page_id: int
    title: str
    text: str
    fields: dict[str, list[str]]
    fetched_at: datetime
    score: float
    findings: list[dict[str, Any]]
    ids: list[Identifier] = field(default_factory=list)
    key_ids: Identifiers | None = None  # phones, WeChat ids and names that make a new lead's key


@dataclass
class _Row:
    id: int | None
    raw: str
    first_seen: datetime
    last_seen: datetime
    dirty: bool = False


class BatchGrouper:
    """Places a list of new snapshots in order; call ``flush`` once at the end."""

    def __init__(self, session: Session, placings: list[Placing]) -> None:
        self.session = session
        self.placings = placings
        # Identifier rows are written for many pages at once; a failure there names the first one.
        self.owner = placings[0].url if placings else ""
        self.new_leads = 0
        for item in placings:
            found, item.key_ids = extract_page(item.title, item.text, item.fields)
            item.ids = [*found, Identifier("url", url_value(item.url), item.url)]
        self.strong_keys = sorted({(i.kind, i.value) for p in placings for i in p.ids if i.kind in STRONG_KINDS})
        self.cores = sorted({i.value for p in placings for i in p.ids if i.kind == "name"})
        self.page_ids = sorted({p.page_id for p in placings})
        index = name_index(session) if self.cores else None
        self.by_length = index.by_length if index is not None else {}
        self.known: set[str] = index.known if index is not None else set()
        self.added_set: set[str] = set()  # names this batch stores that the shared index lacks
        self.core_matches = self._match_cores()
        self.added_names: list[str] = []
        self.pending_findings: list[dict[str, Any]] = []
        self.pending_owners: list[str] = []
        self.pending_audit: list[dict[str, Any]] = []
        self.touched: set[int] = set()
        self.leads = LeadStates(session)
        # Lead keys this batch may want (new leads take the key of their page's identifiers), looked up
        # at once: only one already taken, by an earlier batch or by this one, needs unique_key's query.
        self.taken_keys: set[str] = set()
        wanted_keys = sorted({lead_key(p.key_ids, p.url)[:KEY_LENGTH] for p in placings if p.key_ids is not None})
        for part in chunks(wanted_keys):
            self.taken_keys.update(session.scalars(_TAKEN_KEYS, {"keys": part}))
        self._load()

    # -- loading ---------------------------------------------------------------------------------

    def _match_cores(self) -> dict[str, dict[str, float]]:
        """For every core of the batch, the candidate names within the cutoff and their scores.

        Only lengths that can reach the cutoff are compared: ratio = 200 * LCS / (len1 + len2) and
        LCS <= the shorter length. Two different strings of the same length under 10 never reach
        90, so for those an exact lookup gives the same answer as scoring every candidate.
        """
        matches: dict[str, dict[str, float]] = {core: {} for core in self.cores}
        by_core_length: dict[int, list[str]] = defaultdict(list)
        for core in self.cores:
            by_core_length[len(core)].append(core)
        for length, cores in by_core_length.items():
            pool: list[str] = []
            for other, values in self.by_length.items():
                if other == length and length < 10:
                    for core in cores:
                        if core in self.known:
                            matches[core][core] = 100.0
                elif 20 * min(length, other) >= 9 * (length + other):
                    pool.extend(values)
            if not pool:
                continue
            scores = process.cdist(cores, pool, scorer=fuzz.ratio, score_cutoff=NAME_CUTOFF, workers=1)
            for i, j in zip(*numpy.nonzero(scores)):
                matches[cores[int(i)]][pool[int(j)]] = float(scores[i, j])
        return matches

    def _load(self) -> None:
        session = self.session
        self.strong: dict[tuple[str, str], set[int]] = defaultdict(set)
        self.names: dict[str, set[int]] = defaultdict(set)
        wanted = sorted(set(self.cores).union(*self.core_matches.values()) | set(self.added_names))
        # Leads holding any of the batch's strong keys or candidate names, in one query per slice.
        for part in chunks([*self.strong_keys, *(("name", value) for value in wanted)]):
            by_kind: dict[str, list[str]] = defaultdict(list)
            for kind, value in part:
                by_kind[kind].append(value)
            rows = session.execute(_holders(tuple(by_kind)),
                                   {f"values_{n}": values for n, values in enumerate(by_kind.values())})
            for lead_id, kind, value in rows:
                if kind == "name":
                    self.names[value].add(lead_id)
                else:
                    self.strong[(kind, value)].add(lead_id)
        self.rows: dict[tuple[int, int, str, str], _Row] = {}
        for part in chunks(self.page_ids):
            for row in session.execute(_PAGE_ROWS, {"page_ids": part}):
                self.rows[(row.lead_id, row.page_id, row.kind, row.value)] = _Row(
                    row.id, row.raw, row.first_seen, row.last_seen)
        lead_ids = set().union(*self.strong.values(), *self.names.values())
        self.leads.load(lead_ids)
        self.splits = session.execute(_SPLITS).all()
        self._apart: set[frozenset[int]] | None = None

    def root(self, lead_id: int) -> int:
        seen: set[int] = set()
        while lead_id not in seen:
            seen.add(lead_id)
            lead = self.leads.get(lead_id)
            if lead is None or lead["merged_into_id"] is None:
                return lead_id
            lead_id = lead["merged_into_id"]
        return lead_id

    def apart(self) -> set[frozenset[int]]:
        if self._apart is None:
            self._apart = set()
            for from_id, to_id in self.splits:
                a, b = self.root(from_id), self.root(to_id)
                if a != b:
                    self._apart.add(frozenset({a, b}))
        return self._apart

    # -- placing ---------------------------------------------------------------------------------

    def _links(self, ids: list[Identifier]) -> dict[int, list[Link]]:
        links: dict[int, list[Link]] = defaultdict(list)
        for kind, value in sorted({(i.kind, i.value) for i in ids if i.kind in STRONG_KINDS}):
            for lead_id in sorted(self.strong.get((kind, value), ())):
                links[self.root(lead_id)].append(Link(kind, value, value))
        cores = sorted({i.value for i in ids if i.kind == "name"})
        if not cores:
            return links
        best: dict[str, tuple[str, float]] = {}
        extra = self._extra_scores(cores)
        for n, core in enumerate(cores):
            for value, score in [*self.core_matches[core].items(), *extra[n].items()]:
                if score > best.get(value, ("", -1.0))[1]:
                    best[value] = (core, score)
        for value in sorted(best):
            core, score = best[value]
            for lead_id in sorted(self.names.get(value, ())):
                links[self.root(lead_id)].append(Link("name", core, value, score))
        return links

    def _extra_scores(self, cores: list[str]) -> list[dict[str, float]]:
        """Scores against names first stored by this batch (not yet in the candidate index)."""
        extra: list[dict[str, float]] = [{} for _ in cores]
        if self.added_names:
            scores = process.cdist(cores, self.added_names, scorer=fuzz.ratio, score_cutoff=NAME_CUTOFF,
                                   workers=1)
            for i, j in zip(*numpy.nonzero(scores)):
                extra[int(i)][self.added_names[int(j)]] = float(scores[i, j])
        return extra

    def place(self, item: Placing) -> None:
        session = self.session
        links = self._links(item.ids)
        chosen = _choose(links, self.apart()) if links else []
        categories = {row["category"] for row in item.findings}
        severity = max(row["severity"] for row in item.findings)
        created = not chosen
        if created:
            old = item.key_ids
            names = [ident.raw for ident in item.ids if ident.kind == "name"]
            # A Core INSERT (the ORM adds a flush per lead); the "create" audit row is queued and
            # written before any merge or reopen adds rows, in the order the ORM wrote them.
            key = lead_key(old, item.url)
            if key[:KEY_LENGTH] in self.taken_keys:
                key = unique_key(session, key)
            else:
                key = key[:KEY_LENGTH]
            self.taken_keys.add(key)
            values = {
                "key": key,
                "name": max(names, key=lambda raw: _name_rank(raw, 1)) if names else item.title.strip() or item.url,
                "status": "new", "severity": severity, "score": float(item.score), "categories": sorted(categories),
                "first_seen": item.fetched_at, "last_seen": item.fetched_at, "status_changed_at": utcnow(),
                "merged_into_id": None,
            }
            lead_id = session.execute(_INSERT_LEAD, values).inserted_primary_key[0]
            self.leads.add(lead_id, values)
            self.new_leads += 1
            self.pending_audit.append(audit.values(lead_id, "create", audit.SYSTEM_ACTOR, to_status="new",
                                                   reason=f"新线索：{item.url}", details={"url": item.url}))
        else:
            lead_id = min(chosen)
            others = sorted(set(chosen) - {lead_id})
            if others:
                self._merge(lead_id, others, links, item.url)
            state = self.leads.get(lead_id)
            assert state is not None
            state["categories"] = sorted(set(state["categories"]) | categories)
            state["severity"] = max(state["severity"], severity)
            state["score"] = max(state["score"], float(item.score))
            state["first_seen"] = min(state["first_seen"], item.fetched_at)
            state["last_seen"] = max(state["last_seen"], item.fetched_at)
        for row in item.findings:
            row["lead_id"] = lead_id
        self.add_findings(item.url, item.findings)
        self._remember(lead_id, item)
        self.touched.add(lead_id)
        if not created and self.leads.states[lead_id]["status"] in REOPENABLE:
            # Rare: the ORM transition writes the status change and its audit row (after the
            # "create" rows queued so far, as when those went through the ORM too).
            self._write_audit()
            lead = self.leads.orm(lead_id)
            local = item.fetched_at.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")
            reopen_if_closed(session, lead, item.url, item.fetched_at, local)
            session.flush()
            self.leads.adopt(lead)

    def add_findings(self, url: str, rows: list[dict[str, Any]]) -> None:
        """Queue finding rows (lead_id already set, or None) for the next ``flush``."""
        self.pending_findings.extend(rows)
        self.pending_owners.extend([url] * len(rows))

    def _merge(self, lead_id: int, others: list[int], links: dict[int, list[Link]], url: str) -> None:
        self.flush()
        lead = self.leads.orm(lead_id)
        for other_id in others:
            other = self.leads.orm(other_id)
            shared = links[other_id] + links[lead.id]
            merge_into(
                self.session, lead, other, audit.SYSTEM_ACTOR,
                reason=f"新证据 {url} 同时关联两条线索（{links[other_id][0].describe()}）",
                details={"url": url, "links": [link.as_dict() for link in shared]},
            )
        self.session.flush()
        # merge_into moved and deduplicated identifier rows through the ORM: drop every cached copy.
        self.session.expire_all()
        self.leads.forget()
        self._load()

    def _remember(self, lead_id: int, item: Placing) -> None:
        when = item.fetched_at
        for ident in item.ids:
            key = (lead_id, item.page_id, ident.kind, ident.value)
            row = self.rows.get(key)
            if row is None:
                self.rows[key] = _Row(None, ident.raw, when, when)
                if ident.kind in STRONG_KINDS:
                    self.strong[(ident.kind, ident.value)].add(lead_id)
                elif ident.kind == "name":
                    self.names[ident.value].add(lead_id)
                    if ident.value not in self.known and ident.value not in self.added_set:
                        self.added_set.add(ident.value)
                        self.added_names.append(ident.value)
            elif when < row.first_seen or when > row.last_seen:
                row.first_seen = min(row.first_seen, when)
                row.last_seen = max(row.last_seen, when)
                row.dirty = True

    # -- writing ---------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write pending findings and identifier rows, then refresh the touched leads' names."""
        session = self.session
        session.flush()
        self._write_audit()
        if self.pending_findings:
            execute_rows(session, _INSERT_FINDING, _FINDING, self.pending_findings, self.pending_owners)
            self.pending_findings, self.pending_owners = [], []
        new = [{"lead_id": k[0], "page_id": k[1], "kind": k[2], "value": k[3], "raw": row.raw,
                "first_seen": row.first_seen, "last_seen": row.last_seen}
               for k, row in self.rows.items() if row.id is None]
        if new:
            execute_rows(session, _INSERT_IDENT, _IDENT, new, [self.owner] * len(new))
        changed = [{"row_id": row.id, "new_first": row.first_seen, "new_last": row.last_seen}
                   for row in self.rows.values() if row.id is not None and row.dirty]
        if changed:
            execute_rows(session, _UPDATE_IDENT, _IDENT, changed, [self.owner] * len(changed))
        for row in self.rows.values():
            row.dirty = False
        self._refresh_names()
        self.leads.write()
        # Rows written above have ids now; _merge reloads them, and nothing else reads them again.
        self.rows = {k: row for k, row in self.rows.items() if row.id is not None}

    def _write_audit(self) -> None:
        if self.pending_audit:
            execute_rows(self.session, _INSERT_AUDIT, _AUDIT, self.pending_audit,
                         [self.owner] * len(self.pending_audit))
            self.pending_audit = []

    def _refresh_names(self) -> None:
        if not self.touched:
            return
        counts: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for part in chunks(sorted(self.touched)):
            rows = self.session.execute(_NAME_COUNTS, {"lead_ids": part})
            for lead_id, raw, pages in rows:
                counts[lead_id].append((raw, pages))
        for lead_id, found in counts.items():
            state = self.leads.get(lead_id)
            if state is not None:
                state["name"] = max(found, key=lambda row: (_name_rank(row[0], row[1]), row[0]))[0]
        self.touched = set()

