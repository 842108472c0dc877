"""The shared base of xunjian's spiders: one source from ``sources.toml`` drives one spider run.

A concrete spider sets ``kind`` and implements ``parse``; the base loads the source, applies its limits
and politeness overrides to the crawler's settings, issues the start requests (through the browser when
the source says ``render = true``), turns responses into ``PageItem``s and counts every failure.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from datetime import datetime, timezone
from typing import Any, AsyncIterator

import scrapy
from scrapy import signals
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    IgnoreRequest,
)
from scrapy.http import HtmlResponse, Response
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet.error import (
    ConnectError,
    ConnectionRefusedError,
    DNSLookupError,
    TCPTimedOutError,
    TimeoutError,
)
from twisted.python.failure import Failure

from crawler.chromium import browser_env, prepare_sandbox, unsandboxed
from crawler.items import PageItem
from crawler.middlewares.conditional import NotModified
from crawler.middlewares.netpolicy import BrowserRequestGuard, NetworkBlocked
from crawler.middlewares.robots import RobotsUnreachable
from crawler.sources import Source, SourcesError, find_source, load_sources

# Callbacks whose pages are only stored, never read for links: safe to request conditionally.
LEAF_CALLBACKS = frozenset({"parse_detail", "parse_page"})
# Scrapy 2.13+ wraps Twisted's connection errors in its own exception types; accept both.
UNREACHABLE_ERRORS = (
    ConnectionRefusedError, ConnectError, DNSLookupError, TCPTimedOutError, TimeoutError,
    DownloadConnectionRefusedError, CannotResolveHostError, DownloadTimeoutError, DownloadFailedError,
)


class SourceSpider(scrapy.Spider):
    kind: str = ""

    def __init__(self, *args: Any, source: str | Source | None = None, sources: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if isinstance(source, Source):
            self.source = source
        else:
            if not source:
                raise SourcesError(f"爬虫 {self.name} 需要参数 -a source=来源名称")
            self.source = find_source(load_sources(sources), source)
        if self.source.kind != self.kind:
            raise SourcesError(
                f"{self.source.file}:{self.source.line}: 来源 \"{self.source.name}\" 的类型是 "
                f"{self.source.kind}，应使用爬虫 \"{self.source.kind}\" 而不是 \"{self.kind}\""
            )
        self.allowed_domains = list(self.source.allowed_domains)
        self._follow = [re.compile(p) for p in self.source.follow]
        self._deny = [re.compile(p) for p in self.source.deny]
        self.unreachable_start: list[str] = []

    @classmethod
    def from_crawler(cls, crawler, *args: Any, **kwargs: Any):
        if "sources" not in kwargs and not isinstance(kwargs.get("source"), Source):
            kwargs["sources"] = crawler.settings.get("XUNJIAN_SOURCES")
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider._apply_source_settings(crawler.settings)
        if spider.source.render:  # the requests chromium makes on its own pass the network policy too
            guard = BrowserRequestGuard(crawler, spider.source.allow_private)
            crawler.settings.set("PLAYWRIGHT_ABORT_REQUEST", guard, priority="spider")
            spider._sandbox_browser(crawler)
        return spider

    def _sandbox_browser(self, crawler) -> None:
        """Launch options of the rendering browser: sandboxed (as ``nobody`` through a wrapper when
        root) if a probe start of it succeeds, else ``--no-sandbox``, logged and counted. The wrapper
        stays until the spider closes (scrapy-playwright relaunches a browser that died); the browser
        inherits none of the crawler's environment."""
        options = dict(crawler.settings.getdict("PLAYWRIGHT_LAUNCH_OPTIONS"), env=browser_env())
        executable = options.get("executable_path") or crawler.settings.get("XUNJIAN_CHROMIUM")
        prepared = prepare_sandbox(executable) if executable else None
        if prepared:
            options["executable_path"], self._sandbox_dir = prepared
            options["chromium_sandbox"] = True
            if self._sandbox_dir:  # a wrapper (root)
                crawler.signals.connect(self._remove_sandbox_wrapper, signal=signals.spider_closed)
        else:
            options["chromium_sandbox"] = False
            crawler.signals.connect(self._count_unsandboxed, signal=signals.spider_opened)  # stats come later
            self.logger.warning("chromium sandbox unavailable (%s): rendered pages run with --no-sandbox",
                                unsandboxed.get(executable, "no executable"))
        crawler.settings.set("PLAYWRIGHT_LAUNCH_OPTIONS", options, priority="spider")

    def _count_unsandboxed(self) -> None:
        self.crawler.stats.set_value("xunjian/render/unsandboxed", 1)

    def _remove_sandbox_wrapper(self) -> None:
        shutil.rmtree(self._sandbox_dir, ignore_errors=True)

    def _apply_source_settings(self, settings) -> None:
        """Per-source limits and politeness; settings are not frozen yet when the spider is built."""
        src = self.source
        if not src.render:
            # No page of this source goes through a browser: Scrapy's own HTTP handler, so the crawl
            # neither starts Playwright's driver nor routes every request through its handler.
            base = settings.getdict("DOWNLOAD_HANDLERS_BASE")
            settings.set("DOWNLOAD_HANDLERS", {"http": base["http"], "https": base["https"]}, priority="spider")
        settings.set("DEPTH_LIMIT", src.max_depth, priority="spider")
        settings.set("CLOSESPIDER_PAGECOUNT", src.max_pages, priority="spider")
        if src.delay is not None:
            settings.set("DOWNLOAD_DELAY", src.delay, priority="spider")
            settings.set("AUTOTHROTTLE_START_DELAY", src.delay, priority="spider")
        if src.concurrency is not None:
            settings.set("CONCURRENT_REQUESTS_PER_DOMAIN", src.concurrency, priority="spider")
            settings.set("AUTOTHROTTLE_TARGET_CONCURRENCY", float(src.concurrency), priority="spider")
        if src.max_minutes is not None:
            settings.set("CLOSESPIDER_TIMEOUT", src.max_minutes * 60.0, priority="spider")
        if src.max_bytes is not None:  # read by the HTTP handler and by HttpCompressionMiddleware
            settings.set("DOWNLOAD_MAXSIZE", src.max_bytes, priority="spider")

    # --- requests --------------------------------------------------------------------------
    async def start(self) -> AsyncIterator[Any]:
        for url in self.source.start_urls:
            yield self.request(url, self.parse_start, start=True)

    def request(self, url: str, callback, *, start: bool = False, **meta: Any) -> scrapy.Request:
        if start:
            meta["xunjian_start"] = True
        elif getattr(callback, "__name__", "") in LEAF_CALLBACKS:
            meta["xunjian_leaf"] = True
        if self.source.render:
            meta["playwright"] = True
        return scrapy.Request(url, callback=callback, errback=self.on_error, meta=meta)

    def wants(self, url: str) -> bool:
        """Whether a discovered URL is inside the source's follow/deny rules."""
        if any(p.search(url) for p in self._deny):
            return False
        return not self._follow or any(p.search(url) for p in self._follow)

    def parse_start(self, response: Response, **kwargs: Any):
        return self.parse(response, **kwargs)

    # --- items -----------------------------------------------------------------------------
    def page_item(self, response: Response) -> PageItem | None:
        if not hasattr(response, "text"):  # images, PDFs and other non-text bodies
            self.crawler.stats.inc_value("xunjian/skipped/not_text")
            return None
        content_hash = hashlib.sha256(response.body).hexdigest()
        known = getattr(self, "known_pages", None)
        if known is not None and response.status == 200 and known.unchanged(response.url, content_hash):
            return None  # same body as the stored snapshot: nothing to extract, detect or capture
        headers = {
            k.decode("latin-1"): b", ".join(v).decode("latin-1", "replace")
            for k, v in response.headers.items()
        }
        return PageItem(
            source=self.source.name,
            url=response.url,
            requested_url=(response.request.meta.get("redirect_urls") or [response.url])[0]
            if response.request
            else response.url,
            fetched_at=datetime.now(timezone.utc),
            status=response.status,
            headers=headers,
            encoding=getattr(response, "encoding", None),
            content_hash=content_hash,
            html=response.text,
            doc=response.selector.root if isinstance(response, HtmlResponse) else None,
            selectors=dict(self.source.selectors.items()),
            rendered=bool(response.meta.get("playwright")),
            body=response.body,
            response=response,  # the rest of the exchange is read from it only for archived pages
        )

    # --- failures --------------------------------------------------------------------------
    def on_error(self, failure: Failure):
        stats = self.crawler.stats
        if failure.check(NotModified):  # a 304: the stored snapshot is current (counted by the middleware)
            return
        request = getattr(failure, "request", None)
        url = request.url if request is not None else "?"
        kind = error_kind(failure)
        if kind == "robots_forbidden":  # politeness working as intended, not an error
            stats.inc_value("xunjian/robots_forbidden")
            return
        if kind == "too_large":
            stats.inc_value("xunjian/refused/too_large")
        stats.inc_value(f"xunjian/errors/{kind}")
        stats.inc_value("xunjian/errors")
        refused = (RobotsUnreachable, NetworkBlocked)
        if request is not None and request.meta.get("xunjian_start") and failure.check(*refused, *UNREACHABLE_ERRORS):
            why = failure.value.reason if failure.check(*refused) else failure.getErrorMessage()
            self.unreachable_start.append(f"{url}（{why or kind}）")
            stats.set_value("xunjian/start_unreachable", len(self.unreachable_start))
        self.logger.warning("request failed (%s): %s: %s", kind, url, failure.getErrorMessage())


def _header_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _header_pairs(headers) -> list[tuple[str, str]]:
    return [(_header_text(name), _header_text(value)) for name, values in headers.items() for value in values]


def exchange_fields(response: Response) -> dict[str, Any]:
    """The raw request/response metadata a WARC record needs (see PageItem)."""
    request = response.request
    ip = getattr(response, "ip_address", None)
    return {
        "body": response.body,
        "protocol": getattr(response, "protocol", None) or "HTTP/1.1",
        "request_method": request.method if request is not None else "GET",
        "request_headers": _header_pairs(request.headers) if request is not None else [],
        "response_headers": _header_pairs(response.headers),
        "ip_address": str(ip) if ip is not None else None,
    }


def error_kind(failure: Failure) -> str:
    """A short, stable name for a failed request, used in stats and run summaries."""
    if failure.check(HttpError):
        return f"http_{failure.value.response.status}"
    if failure.check(RobotsUnreachable):
        return "robots_unreachable"
    if failure.check(NetworkBlocked):
        return f"blocked_{failure.value.blocked.reason}"
    # Scrapy's HTTP handler cancels a download only for DOWNLOAD_MAXSIZE (its timeouts are
    # DownloadTimeoutError); HttpCompressionMiddleware ignores a body that inflates beyond it.
    if failure.check(DownloadCancelledError) or (
        failure.check(IgnoreRequest) and "DOWNLOAD_MAXSIZE" in str(failure.value)
    ):
        return "too_large"
    if failure.check(IgnoreRequest):
        message = str(failure.value)
        if "robots.txt" in message:
            return "robots_forbidden"
        if "redirect" in message:
            return "redirect_loop"
        return "ignored"
    if failure.check(ConnectionRefusedError, DownloadConnectionRefusedError):
        return "connection_refused"
    if failure.check(DNSLookupError, CannotResolveHostError):
        return "dns"
    if failure.check(TimeoutError, TCPTimedOutError, DownloadTimeoutError):
        return "timeout"
    return failure.type.__name__ if failure.type else "unknown"
