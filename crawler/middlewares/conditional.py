"""ConditionalRequestMiddleware: an unchanged page costs a 304 (or a hash comparison), nothing more.

When the spider opens, the ETag / Last-Modified and content hash of the last snapshot of every page of
the source are loaded from the database. A request for such a page carries ``If-None-Match`` /
``If-Modified-Since``; a 304 answer means "unchanged": the page's (and its leads') last-seen time is
moved, and nothing is extracted, detected, captured or stored again. The spider asks ``unchanged()``
before building an item, so a 200 with the same body as the last snapshot is skipped the same way.

Only "leaf" requests are made conditional: pages whose links the crawl does not need (listing detail
pages, sitemap entries, pages at the depth limit). A navigation page answered with 304 would have no
body to take links from, and the crawl would silently end early. Pages fetched through the browser
and pages whose last flagged snapshot still lacks evidence are always fetched in full.
"""

from __future__ import annotations

from datetime import datetime, timezone

from scrapy import signals
from scrapy.exceptions import IgnoreRequest

from crawler.db import database_for
from storage.repository import KnownPage, known_pages, touch_pages

FLUSH_EVERY = 50


class NotModified(IgnoreRequest):
    """The server answered 304 to a conditional request: the stored snapshot is still current."""


class ConditionalRequestMiddleware:
    def __init__(self, crawler):
        settings = crawler.settings
        self.crawler = crawler
        self.stats = crawler.stats
        self.enabled = settings.getbool("XUNJIAN_CONDITIONAL", True)
        self.db_url = settings.get("XUNJIAN_DB_URL") or None
        self.known: dict[str, KnownPage] = {}
        self.pending: list[tuple[str, datetime]] = []
        self.depth_limit = 0

    @classmethod
    def from_crawler(cls, crawler):
        middleware = cls(crawler)
        crawler.signals.connect(middleware.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(middleware.spider_closed, signal=signals.spider_closed)
        return middleware

    # --- lifecycle -------------------------------------------------------------------------
    def spider_opened(self, spider) -> None:
        source = getattr(spider, "source", None)
        if source is None:
            return
        self.depth_limit = self.crawler.settings.getint("DEPTH_LIMIT", 0)
        self.known = known_pages(database_for(self.db_url), source.name)
        self.stats.set_value("xunjian/known_pages", len(self.known))
        spider.known_pages = self

    def spider_closed(self, spider, reason: str) -> None:
        self.flush()

    # --- used by the spider ------------------------------------------------------------------
    def unchanged(self, url: str, content_hash: str) -> bool:
        """True (and the page is touched) when ``url`` was stored with exactly this body, evidence and all."""
        page = self.known.get(url)
        if page is None or not page.complete or page.content_hash != content_hash:
            return False
        self.stats.inc_value("xunjian/unchanged")
        self.touch(url)
        return True

    def touch(self, url: str) -> None:
        self.pending.append((url, datetime.now(timezone.utc)))
        if len(self.pending) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            batch, self.pending = self.pending, []
            touch_pages(database_for(self.db_url), batch)

    # --- downloader hooks ----------------------------------------------------------------------
    def _leaf(self, request) -> bool:
        if request.meta.get("xunjian_leaf"):
            return True
        return bool(self.depth_limit) and request.meta.get("depth", 0) >= self.depth_limit

    def process_request(self, request, spider=None):
        if not self.enabled or request.method != "GET" or request.meta.get("playwright"):
            return None
        page = self.known.get(request.url)
        if page is None or not page.complete or not self._leaf(request):
            return None
        if page.etag:
            request.headers.setdefault(b"If-None-Match", page.etag.encode("latin-1", "replace"))
        if page.last_modified:
            request.headers.setdefault(b"If-Modified-Since", page.last_modified.encode("latin-1", "replace"))
        if page.etag or page.last_modified:
            request.meta["xunjian_conditional"] = True
            self.stats.inc_value("xunjian/conditional/sent")
        return None

    def process_response(self, request, response, spider=None):
        if response.status == 304 and request.meta.get("xunjian_conditional"):
            self.stats.inc_value("xunjian/not_modified")
            self.touch(request.url)
            raise NotModified(f"not modified: {request.url}")
        return response
