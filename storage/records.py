"""Plain data the crawler hands to the storage layer (no ORM objects)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class FindingRecord:
    category: str
    subcategory: str
    rule: str
    severity: int
    start: int
    end: int
    text: str
    normalized: str
    explanation: str
    basis: str


@dataclass
class EvidenceRecord:
    """One evidence file already written under the data directory."""

    kind: str  # warc | screenshot | text
    sha256: str
    path: str  # relative to the data directory, '/'-separated
    size: int
    media_type: str
    captured_at: datetime  # timezone-aware


@dataclass
class PageRecord:
    source: str
    url: str
    requested_url: str
    final_url: str
    fetched_at: datetime  # timezone-aware
    status: int
    headers: dict[str, str]
    encoding: str | None
    title: str
    text: str
    fields: dict[str, list[str]]
    image_urls: list[str]
    content_hash: str  # sha256 hex of the response body
    categories: list[str]
    score: float
    rules_version: str
    findings: list[FindingRecord] = field(default_factory=list)
    evidence: list[EvidenceRecord] = field(default_factory=list)


@dataclass
class BatchResult:
    pages: int = 0
    new_pages: int = 0
    new_snapshots: int = 0
    new_findings: int = 0
    new_leads: int = 0

    def __iadd__(self, other: BatchResult) -> BatchResult:
        self.pages += other.pages
        self.new_pages += other.new_pages
        self.new_snapshots += other.new_snapshots
        self.new_findings += other.new_findings
        self.new_leads += other.new_leads
        return self
