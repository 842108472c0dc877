"""The one item xunjian's spiders produce: a fetched page on its way through extract → detect → store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storage.records import EvidenceRecord


@dataclass
class PageItem:
    # Set by the spider from the response.
    source: str
    url: str  # final URL after redirects
    requested_url: str
    fetched_at: datetime  # UTC, aware
    status: int
    headers: dict[str, str]
    encoding: str | None
    content_hash: str  # SHA-256 of the raw body as received
    html: str  # decoded response.text; dropped by the store pipeline
    # The response's own parse of ``html`` (its selector's lxml root), which the spider also reads links
    # from, so the page is parsed once; ExtractPipeline reads it and drops it. None: parse ``html``.
    doc: Any = field(default=None, repr=False, compare=False)
    selectors: dict[str, str] = field(default_factory=dict)
    rendered: bool = False
    # The HTTP exchange as Scrapy saw it, kept for the WARC record of flagged pages; the evidence
    # pipeline empties ``body`` once it is done with the item. A spider may instead leave the Scrapy
    # response in ``response``: the evidence pipeline then reads the fields below from it, only for
    # the pages it archives, and lets it go.
    body: bytes = b""  # response body bytes as received (after Scrapy's transfer/content decoding)
    response: Any = field(default=None, repr=False, compare=False)
    protocol: str = "HTTP/1.1"
    request_method: str = "GET"
    request_headers: list[tuple[str, str]] = field(default_factory=list)
    response_headers: list[tuple[str, str]] = field(default_factory=list)  # every value, in order
    ip_address: str | None = None
    # Filled by ExtractPipeline.
    title: str = ""
    text: str = ""
    fields: dict[str, list[str]] = field(default_factory=dict)
    image_urls: list[str] = field(default_factory=list)
    # Filled by DetectPipeline.
    categories: list[str] = field(default_factory=list)
    score: float = 0.0
    rules_version: str = ""
    findings: list[dict] = field(default_factory=list)
    # Filled by EvidencePipeline: files already written under the data directory.
    evidence: list[EvidenceRecord] = field(default_factory=list)
