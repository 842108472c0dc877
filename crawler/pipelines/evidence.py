"""EvidencePipeline: archives every new flagged snapshot before it is stored (extract → detect → evidence → store).

For a page with findings whose (url, content hash) is not yet in the database it writes, content-addressed
under ``<data>/evidence/``: a full-page PNG screenshot taken by chromium (first, so the document the
browser loaded can go into the WARC too), the HTTP request/response as a WARC 1.1 file, and the
extracted text. The records ride on the item to StorePipeline, which inserts them
in the same transaction as the snapshot. Unchanged content (snapshot already stored with evidence) costs
one indexed lookup and nothing else. A failed screenshot or file write is counted and logged; the page
and its other evidence are still stored.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timezone

from crawler.db import database_for
from crawler.evidence.screenshot import BrowserCapture, ScreenshotError, Screenshotter
from crawler.evidence.warc import WARC_EXT, WARC_MEDIA_TYPE, HttpExchange, warc_bytes
from crawler.items import PageItem
from crawler.version import XUNJIAN_VERSION, package_version
from spiders.base import exchange_fields
from storage.errors import StorageError
from storage.evidence import EvidenceStore, snapshot_has_evidence
from storage.records import EvidenceRecord

logger = logging.getLogger(__name__)

STATS = "xunjian/evidence"


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


class EvidencePipeline:
    def __init__(self, crawler):
        settings = crawler.settings
        self.stats = crawler.stats
        self.db = database_for(settings.get("XUNJIAN_DB_URL") or None)
        self.store = EvidenceStore(settings.get("XUNJIAN_DATA_DIR") or None)
        self.screenshots_enabled = settings.getbool("XUNJIAN_SCREENSHOTS", True)
        self.screenshots = Screenshotter(
            settings.get("XUNJIAN_CHROMIUM") or "/usr/bin/chromium",
            user_agent=settings.get("USER_AGENT"),
            timeout=settings.getfloat("XUNJIAN_SCREENSHOT_TIMEOUT", 30.0),
            parallel=settings.getint("XUNJIAN_SCREENSHOT_PARALLEL", 2),
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
        shot = await self.screenshot(item.url) if self.screenshots_enabled else None
        document = shot.document if shot is not None else None
        exchange = exchange_of(item)
        text = item.text.encode("utf-8")

        def write() -> list[tuple[str, EvidenceRecord | None, bool]]:
            files = [self._put("warc", item.url, warc_bytes(exchange, SOFTWARE, browser=document),
                               ext=WARC_EXT, media_type=WARC_MEDIA_TYPE, captured_at=item.fetched_at)]
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

    async def screenshot(self, url: str) -> BrowserCapture | None:
        try:
            return await self.screenshots.capture(url)
        except ScreenshotError as error:
            self.stats.inc_value(f"{STATS}/failed/screenshot")
            logger.warning("%s", error)
            return None

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
