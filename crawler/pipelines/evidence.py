"""EvidencePipeline: archives every new flagged snapshot before it is stored (extract → detect → evidence → store).

For a page with findings whose (url, content hash) is not yet in the database it writes, content-addressed
under ``<data>/evidence/``: a full-page PNG screenshot of the crawled document taken by chromium
(first, so the subresources it loaded go into the WARC too; the page itself is not fetched again, see
crawler/evidence/screenshot.py), the HTTP request/response as a WARC 1.1 file, and the extracted text.
The screenshot's subresources are fetched by this crawl's own downloader (``fetch_resource``), so the
network policy, robots.txt, the User-Agent and the size limits apply to them as to any page. The
records ride on the item to StorePipeline, which inserts them in the same transaction as the snapshot.
Unchanged content (snapshot already stored with evidence) costs one indexed lookup and nothing else. A
failed screenshot or file write is counted and logged; the page and its other evidence are still stored.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import scrapy
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.python.failure import Failure

from crawler.db import database_for
from crawler.evidence.screenshot import (
    BrowserCapture,
    Limits,
    ResourceRefused,
    ScreenshotError,
    Screenshotter,
)
from crawler.evidence.warc import WARC_EXT, WARC_MEDIA_TYPE, HttpExchange, warc_bytes
from crawler.items import PageItem
from crawler.version import XUNJIAN_VERSION, package_version
from spiders.base import error_kind, exchange_fields
from storage.errors import StorageError
from storage.evidence import EvidenceStore, snapshot_has_evidence
from storage.records import EvidenceRecord

logger = logging.getLogger(__name__)

STATS = "xunjian/evidence"


# Media types chromium is shown the document as; anything else Scrapy parsed as text is shown as HTML.
SHOWN_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
SOFTWARE = f"xunjian/{XUNJIAN_VERSION} (Scrapy {package_version('scrapy')}; warcio {package_version('warcio')})"


def exchange_of(item: PageItem) -> HttpExchange:
    if item.response is not None:
        for name, value in exchange_fields(item.response).items():
            setattr(item, name, value)
    return HttpExchange(
        url=item.url,
        requested_url=item.requested_url,
        method=item.request_method,
        protocol=item.protocol,
        request_headers=list(item.request_headers),
        status=item.status,
        response_headers=list(item.response_headers),
        body=item.body,
        fetched_at=item.fetched_at,
        ip_address=item.ip_address,
        rendered=item.rendered,
        decoded_content=item.rendered,  # the browser's document, whatever coding the network used
        extra={
            "xunjian-source": item.source,
            "content-sha256": item.content_hash,
            "fetched-at": item.fetched_at.astimezone(timezone.utc).isoformat(),
            "rules-version": item.rules_version,
        },
    )


def screenshot_notes(shot: BrowserCapture | None) -> list[tuple[str, str]]:
    """Metadata fields of the WARC that say how the screenshot was made."""
    if shot is None:
        return [("screenshot", "none (screenshots off, or the browser failed)")]
    return [
        ("screenshot", ("the crawl body above (for rendered pages the detected DOM), handed to chromium "
                        "from memory: the page was not fetched again")),
        ("screenshot-taken-at", shot.captured_at.isoformat()),
        ("screenshot-sandbox", "chromium sandbox" if shot.sandboxed else "none (--no-sandbox fallback)"),
        ("screenshot-resources", f"{len(shot.resources)} response(s) in this file"),
        *(("screenshot-refused", f"{url} ({reason})") for url, reason in shot.refused),
    ]


class EvidencePipeline:
    def __init__(self, crawler):
        settings = crawler.settings
        self.crawler = crawler
        self.stats = crawler.stats
        self.db = database_for(settings.get("XUNJIAN_DB_URL") or None)
        self.store = EvidenceStore(settings.get("XUNJIAN_DATA_DIR") or None)
        self.screenshots_enabled = settings.getbool("XUNJIAN_SCREENSHOTS", True)
        self.screenshots = Screenshotter(
            settings.get("XUNJIAN_CHROMIUM") or "/usr/bin/chromium",
            user_agent=settings.get("USER_AGENT"),
            timeout=settings.getfloat("XUNJIAN_SCREENSHOT_TIMEOUT", 30.0),
            parallel=settings.getint("XUNJIAN_SCREENSHOT_PARALLEL", 2),
            limits=Limits(
                resources=settings.getint("XUNJIAN_SCREENSHOT_MAX_RESOURCES", Limits.resources),
                bytes=settings.getint("XUNJIAN_SCREENSHOT_MAX_BYTES", Limits.bytes),
                seconds=settings.getfloat("XUNJIAN_SCREENSHOT_RESOURCE_SECONDS", Limits.seconds),
                height=settings.getint("XUNJIAN_SCREENSHOT_MAX_HEIGHT", Limits.height),
            ),
            fetch=self.fetch_resource,
        )

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    async def process_item(self, item: PageItem) -> PageItem:
        try:
            if not item.findings:
                self.stats.inc_value(f"{STATS}/skipped_unflagged")
            elif snapshot_has_evidence(self.db, item.url, item.content_hash):
                self.stats.inc_value(f"{STATS}/skipped_unchanged")
            else:
                item.evidence = await self.capture(item)
                self.stats.inc_value(f"{STATS}/captured")
        finally:
            item.body = b""  # the raw bytes are in the WARC now, or not needed
            item.response = None
        return item

    async def capture(self, item: PageItem) -> list[EvidenceRecord]:
        shot = await self.screenshot(item) if self.screenshots_enabled else None
        exchange = exchange_of(item)
        text = item.text.encode("utf-8")

        def write() -> list[tuple[str, EvidenceRecord | None, bool]]:
            warc = warc_bytes(exchange, SOFTWARE, resources=shot.resources if shot else (),
                              notes=screenshot_notes(shot))
            files = [self._put("warc", item.url, warc, ext=WARC_EXT, media_type=WARC_MEDIA_TYPE,
                               captured_at=item.fetched_at)]
            if shot is not None:
                files.append(self._put("screenshot", item.url, shot.png, ext="png", media_type="image/png",
                                       captured_at=shot.captured_at))
            files.append(self._put("text", item.url, text, ext="txt", media_type="text/plain; charset=utf-8",
                                   captured_at=item.fetched_at))
            return files

        # Compressing the WARC and fsync-ing each file happen off the reactor thread, so the crawl
        # goes on downloading and parsing while the disk catches up.
        records: list[EvidenceRecord] = []
        for kind, record, written in await asyncio.to_thread(write):
            if record is None:
                self.stats.inc_value(f"{STATS}/failed/{kind}")
                continue
            self.stats.inc_value(f"{STATS}/{'files' if written else 'reused'}/{kind}")
            records.append(record)
        return records

    async def screenshot(self, item: PageItem) -> BrowserCapture | None:
        """The crawled document (never a new visit) as a PNG; JavaScript only for ``render = true`` sources."""
        source = self.crawler.spider.source
        header = next((v for k, v in item.headers.items() if k.lower() == "content-type"), "")
        mime = header.split(";")[0].strip().lower()
        try:
            shot = await self.screenshots.capture(item.url, item.html, mime if mime in SHOWN_TYPES else "text/html",
                                                  javascript=source.render, allow_private=source.allow_private)
        except ScreenshotError as error:
            self.stats.inc_value(f"{STATS}/failed/screenshot")
            logger.warning("%s", error)
            return None
        if not shot.sandboxed:
            self.stats.inc_value(f"{STATS}/unsandboxed")
        self.stats.inc_value(f"{STATS}/resources/fetched", len(shot.resources))
        for url, reason in shot.refused:
            self.stats.inc_value(f"{STATS}/resources/refused/{reason}")
            if reason.startswith("blocked_"):  # refused by the network policy before any connection
                self.stats.inc_value("xunjian/blocked")
                self.stats.inc_value(f"xunjian/blocked/{reason.removeprefix('blocked_')}")
                logger.warning("network policy refused %s, a resource of the screenshot of %s (%s)",
                               url, item.url, reason)
        return shot

    async def fetch_resource(self, url: str, headers: dict[str, str], max_bytes: int, seconds: float) -> HttpExchange:
        """One hop of a screenshot's subresource through this crawl's downloader middlewares (network
        policy, robots.txt, User-Agent, decompression limits) and download handler, with no redirect
        followed and no retry; not a page of the crawl (no spider callback, no page count)."""
        request = scrapy.Request(url, headers=headers, meta={
            "dont_redirect": True, "dont_retry": True, "download_maxsize": max_bytes, "download_timeout": seconds,
        })
        fetched_at = datetime.now(timezone.utc)
        try:
            response = await maybe_deferred_to_future(self.crawler.engine.downloader.fetch(request))
        except Exception as error:  # noqa: BLE001 - every download failure is one refusal kind
            raise ResourceRefused(f"download_{error_kind(Failure(error))}") from None
        if not isinstance(response, scrapy.http.Response):  # a retry scheduled by the back-off middleware
            raise ResourceRefused("download_deferred")
        fields = exchange_fields(response)
        return HttpExchange(
            url=response.url, requested_url=url, method=fields["request_method"], protocol=fields["protocol"],
            request_headers=fields["request_headers"], status=response.status,
            response_headers=fields["response_headers"], body=response.body, fetched_at=fetched_at,
            ip_address=fields["ip_address"], extra={"fetched-for": "screenshot subresource"},
        )

    def _put(self, kind: str, url: str, data: bytes, **kwargs) -> tuple[str, EvidenceRecord | None, bool]:
        """Write one file (runs in a worker thread); (kind, record or None on failure, newly written)."""
        try:
            record, written = self.store.put(data, kind=kind, **kwargs)
        except StorageError as error:
            logger.error("evidence %s for %s not saved: %s", kind, url, error)
            return kind, None, False
        return kind, record, written

    async def close_spider(self) -> None:
        await self.screenshots.close()
