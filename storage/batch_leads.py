"""The leads a batch touches, held as plain values and written back with one executemany UPDATE.

Per-lead ORM updates cost a statement (and a round trip) per changed column set; a batch that groups
fifty pages into fifty leads needs one statement instead. Anything that goes through the ORM (a new
lead's INSERT, a merge, a reopen) first writes these values, then works on freshly loaded objects.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from storage.bulk import chunks
from storage.models import Lead

_LEAD = Lead.__table__
# The columns grouping changes; the rest only change through the ORM paths.
CHANGED = ("name", "severity", "score", "categories", "first_seen", "last_seen")
READ = (*CHANGED, "status", "merged_into_id")


class LeadStates:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.states: dict[int, dict[str, Any]] = {}
        self._written: dict[int, tuple[Any, ...]] = {}

    def _keep(self, lead_id: int, values: dict[str, Any]) -> None:
        self.states[lead_id] = values
        self._written[lead_id] = tuple(values[name] for name in CHANGED)

    def load(self, lead_ids: set[int]) -> None:
        missing = sorted(lead_ids - self.states.keys())
        for part in chunks(missing):
            for row in self.session.execute(select(_LEAD.c.id, *(_LEAD.c[name] for name in READ))
                                            .where(_LEAD.c.id.in_(part))):
                values = dict(row._mapping)
                values["categories"] = list(values["categories"])
                self._keep(values.pop("id"), values)

    def get(self, lead_id: int) -> dict[str, Any] | None:
        if lead_id not in self.states:
            self.load({lead_id})
        return self.states.get(lead_id)

    def add(self, lead_id: int, values: dict[str, Any]) -> None:
        """Track a lead this batch just inserted with ``values`` (every column in READ)."""
        kept = {name: values[name] for name in READ}
        kept["categories"] = list(kept["categories"])
        self._keep(lead_id, kept)

    def adopt(self, lead: Lead) -> None:
        """Track an ORM lead that was just flushed (created, merged or reopened)."""
        values = {name: getattr(lead, name) for name in READ}
        values["categories"] = list(values["categories"])
        self._keep(lead.id, values)

    def write(self) -> None:
        rows = []
        for lead_id, values in self.states.items():
            current = tuple(values[name] for name in CHANGED)
            if current != self._written[lead_id]:
                rows.append({"lead_id": lead_id, **{f"new_{name}": values[name] for name in CHANGED}})
                self._written[lead_id] = current
        if rows:
            self.session.execute(update(_LEAD).where(_LEAD.c.id == bindparam("lead_id")).values(
                {name: bindparam(f"new_{name}") for name in CHANGED}), rows)

    def orm(self, lead_id: int) -> Lead:
        """The ORM object of a lead, loaded after writing every pending value."""
        self.write()
        lead = self.session.get(Lead, lead_id, populate_existing=True)
        assert lead is not None
        return lead

    def forget(self) -> None:
        self.states.clear()
        self._written.clear()
