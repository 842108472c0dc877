"""Full-page PNG screenshots of the crawled bytes, in Debian's chromium driven by Playwright's async API.

The page is never visited a second time: the main document is fulfilled from the text the crawler
received and the detectors read (for ``render = true`` sources, the DOM that was detected), so the
picture, the WARC and the detected text describe one and the same response. JavaScript is off unless
the source renders pages. Subresources (images, CSS, fonts; scripts and XHR only with JavaScript on) may
be fetched, each through the network policy and the crawl's own downloader (robots.txt, User-Agent,
size limits), capped by count, bytes and time, and kept for the WARC; every other request is aborted.

One browser per process, launched on the first screenshot and shared by every crawler in the process
(the CLI runs several sources in one Twisted/asyncio reactor); it is closed when the last user
releases it. Chromium runs sandboxed: as root (where chromium refuses its sandbox) it is started as the
unprivileged user ``nobody`` through a small wrapper; where no sandbox can start it falls back to
``--no-sandbox`` and says so once in the log. Each screenshot gets a fresh browser context, a bounded
time, a bounded height and a cap on parallel pages.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urljoin, urlsplit

from playwright.async_api import Browser, Playwright, Route, async_playwright
from playwright.async_api import Error as PlaywrightError

from crawler.chromium import browser_env, first_line, unsandboxed, write_sandbox_wrapper
from crawler.evidence.warc import HttpExchange
from crawler.netpolicy import Blocked, check_url

logger = logging.getLogger(__name__)

CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}
# Subresources a screenshot may need; with JavaScript on, the scripts and their requests too.
STATIC_TYPES = frozenset({"image", "stylesheet", "font"})
SCRIPT_TYPES = frozenset({"script", "xhr", "fetch"})
MAX_REDIRECTS = 5
MAX_WIDTH = 4096  # widest screenshot, in CSS pixels (a hostile page can be as wide as it likes)


@dataclass(frozen=True)
class Limits:
    """Caps of one screenshot: subresources fetched, their bytes, the seconds they may take, PNG height."""

    resources: int = 50
    bytes: int = 10 * 1024 * 1024
    seconds: float = 10.0
    height: int = 10_000


@dataclass
class BrowserCapture:
    png: bytes
    captured_at: datetime  # when the screenshot was taken (aware UTC)
    resources: list[HttpExchange] = field(default_factory=list)  # subresources fetched, every redirect hop
    refused: list[tuple[str, str]] = field(default_factory=list)  # (url, reason) of requests not fetched
    sandboxed: bool = True


class ScreenshotError(Exception):
    """A screenshot could not be taken; ``str()`` is one line naming the URL and the reason."""


class ResourceRefused(Exception):
    """A subresource the fetcher would not fetch; ``reason`` is a short key (``robots``, ``blocked_private`` …)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# fetch(url, request headers, most bytes, most seconds) -> one HTTP exchange (redirects not followed);
# raises ResourceRefused. The crawl supplies one that goes through its own downloader.
Fetch = Callable[[str, dict[str, str], int, float], Awaitable[HttpExchange]]


class SharedBrowser:
    """A lazily launched chromium shared by reference count."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.users = 0
        self.sandboxed = False
        self._lock = asyncio.Lock()
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    async def get(self) -> Browser:
        async with self._lock:
            if self._browser is None or not self._browser.is_connected():
                await self._stop()
                self._playwright = await async_playwright().start()
                self._browser = await self._launch()
            return self._browser

    async def _launch(self) -> Browser:
        options = {"headless": True, "args": CHROMIUM_ARGS, "env": browser_env()}
        if self.executable not in unsandboxed:
            wrapper_dir = tempfile.mkdtemp(prefix="xunjian-chromium-") if os.geteuid() == 0 else None
            try:
                executable = write_sandbox_wrapper(self.executable, wrapper_dir) if wrapper_dir else self.executable
                browser = await self._playwright.chromium.launch(
                    executable_path=executable, chromium_sandbox=True, **options)
                self.sandboxed = True
                return browser
            except (OSError, KeyError, PlaywrightError) as error:
                why = first_line(error)
                unsandboxed[self.executable] = why
                logger.warning("chromium sandbox unavailable (%s): screenshots run with --no-sandbox", why)
            finally:
                if wrapper_dir:  # read once, at launch
                    shutil.rmtree(wrapper_dir, ignore_errors=True)
        self.sandboxed = False
        return await self._playwright.chromium.launch(executable_path=self.executable, chromium_sandbox=False,
                                                      **options)

    async def _stop(self) -> None:
        browser, playwright = self._browser, self._playwright
        self._browser = self._playwright = None
        if browser is not None:
            try:
                await browser.close()
            except PlaywrightError as error:
                logger.debug("closing chromium: %s", error)
        if playwright is not None:
            await playwright.stop()

    async def release(self) -> None:
        self.users -= 1
        if self.users <= 0:
            async with self._lock:
                await self._stop()
            _shared.pop(self.executable, None)


_shared: dict[str, SharedBrowser] = {}


def acquire_browser(executable: str) -> SharedBrowser:
    """The process's browser for ``executable`` (not launched until first used); pair with release()."""
    shared = _shared.setdefault(executable, SharedBrowser(executable))
    shared.users += 1
    return shared


class Screenshotter:
    def __init__(self, executable: str, *, user_agent: str | None = None, timeout: float = 30.0,
                 parallel: int = 2, limits: Limits = Limits(), fetch: Fetch | None = None) -> None:
        self.executable = executable
        self.user_agent = user_agent
        self.timeout = timeout
        self.limits = limits
        self.fetch = fetch  # None: no subresource is fetched
        self._browser: SharedBrowser | None = None
        self._slots = asyncio.Semaphore(max(1, parallel))

    async def capture(self, url: str, document: str, mime: str = "text/html", *, javascript: bool = False,
                      allow_private: bool = False) -> BrowserCapture:
        """A full-page PNG of ``document`` (the crawled text of ``url``) shown as ``url``; raises ScreenshotError.

        ``javascript``: run the page's scripts (sources with ``render = true``); ``allow_private``: the
        source's waiver of the network policy, applied to every subresource."""
        if not os.access(self.executable, os.X_OK):
            raise ScreenshotError(f"截图失败：{url}：找不到可执行的 chromium：{self.executable}")
        if self._browser is None:
            self._browser = acquire_browser(self.executable)
        router = _PageRoute(document.encode("utf-8"), f"{mime}; charset=utf-8", javascript=javascript,
                            allow_private=allow_private, fetch=self.fetch, limits=self.limits)
        async with self._slots:
            try:
                return await asyncio.wait_for(self._capture(url, router, javascript), timeout=self.timeout)
            except TimeoutError:
                raise ScreenshotError(f"截图超时（{self.timeout:g} 秒）：{url}") from None
            except PlaywrightError as error:
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise ScreenshotError(f"截图失败：{url}：{reason}") from error

    async def _capture(self, url: str, router: _PageRoute, javascript: bool) -> BrowserCapture:
        browser = await self._browser.get()
        context = await browser.new_context(
            viewport=VIEWPORT, device_scale_factor=1, locale="zh-CN", user_agent=self.user_agent,
            service_workers="block", java_script_enabled=javascript,
        )
        try:
            page = await context.new_page()
            step = self.timeout * 1000 * 0.6
            await page.route("**/*", router)
            await page.goto(url, wait_until="load", timeout=step)
            if javascript:
                try:
                    await page.wait_for_load_state("networkidle", timeout=min(step, 3000))
                except PlaywrightError:
                    pass  # a page that keeps polling is still worth its screenshot
            # full_page, but an endless page stops at the height limit (the clip is trimmed to the page)
            clip = {"x": 0, "y": 0, "width": MAX_WIDTH, "height": self.limits.height}
            png = await page.screenshot(full_page=True, clip=clip, type="png", timeout=step)
            return BrowserCapture(png=png, captured_at=datetime.now(timezone.utc), resources=router.resources,
                                  refused=router.refused, sandboxed=self._browser.sandboxed)
        finally:
            await context.close()

    async def close(self) -> None:
        if self._browser is not None:
            browser, self._browser = self._browser, None
            await browser.release()


# Headers that describe the transfer, not the body handed to the browser (already decoded).
_TRANSFER_HEADERS = {"content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive"}
# Request headers of chromium's worth passing on; the crawler's downloader sets the User-Agent.
_PASSED_HEADERS = ("accept", "referer")


class _PageRoute:
    """Route handler of one screenshot: the main document from memory, every other request judged.

    The first main-frame navigation is the page itself and is fulfilled with the crawled document; any
    later one (a meta refresh, a script changing ``location``) is aborted, and so is any request for the
    page's own URL (an ``<img>`` pointing at it), so the page is never fetched again. A subresource of an allowed type is fetched through ``fetch`` after the network policy said
    yes, within the count, byte and time caps, following at most MAX_REDIRECTS redirects (each hop
    judged again); everything fetched is kept for the WARC, every refusal with its reason.
    """

    def __init__(self, body: bytes, content_type: str, *, javascript: bool, allow_private: bool,
                 fetch: Fetch | None, limits: Limits) -> None:
        self.body = body
        self.content_type = content_type
        self.types = STATIC_TYPES | SCRIPT_TYPES if javascript else STATIC_TYPES
        self.allow_private = allow_private
        self.fetch = fetch
        self.limits = limits
        self.deadline = 0.0  # set when the document is served
        self.page_url: str | None = None  # likewise
        self.started = 0
        self.received = 0
        self.resources: list[HttpExchange] = []
        self.refused: list[tuple[str, str]] = []

    async def __call__(self, route: Route) -> None:
        request = route.request
        try:
            main_document = request.is_navigation_request() and request.frame.parent_frame is None
        except PlaywrightError:
            main_document = False
        if main_document and self.page_url is None:
            self.page_url = _without_fragment(request.url)
            self.deadline = time.monotonic() + self.limits.seconds
            await _quietly(route.fulfill(status=200, headers={"Content-Type": self.content_type},
                                         body=self.body))
            return
        if urlsplit(request.url).scheme in ("data", "blob"):  # never leaves the browser
            await _quietly(route.continue_())
            return
        if main_document:
            reason = "navigation"
        elif request.resource_type not in self.types:
            reason = f"type_{request.resource_type}"
        elif self.fetch is None:
            reason = "no_fetcher"
        elif self.started >= self.limits.resources:
            reason = "too_many"
        else:
            self.started += 1
            try:
                final = await self._fetch(request.url, await request.all_headers())
            except ResourceRefused as refused:
                reason = refused.reason
            except Exception as error:  # noqa: BLE001 - an unanswered route would stall the whole screenshot
                logger.warning("screenshot resource %s failed: %s: %s", request.url, type(error).__name__, error)
                reason = "failed"
            else:
                await _quietly(route.fulfill(
                    status=final.status, body=final.body,
                    headers={n: v for n, v in final.response_headers if n.lower() not in _TRANSFER_HEADERS},
                ))
                return
        self.refused.append((request.url, reason))
        await _quietly(route.abort("blockedbyclient"))

    async def _fetch(self, url: str, browser_headers: dict[str, str]) -> HttpExchange:
        headers = {name: value for name, value in browser_headers.items() if name.lower() in _PASSED_HEADERS}
        for _ in range(MAX_REDIRECTS + 1):
            if _without_fragment(url) == self.page_url:
                raise ResourceRefused("page_itself")
            try:
                await asyncio.to_thread(check_url, url, allow_private=self.allow_private)
            except Blocked as blocked:
                raise ResourceRefused(f"blocked_{blocked.reason}") from None
            seconds = self.deadline - time.monotonic()
            room = self.limits.bytes - self.received
            if seconds <= 0:
                raise ResourceRefused("too_slow")
            if room <= 0:
                raise ResourceRefused("too_large")
            try:
                exchange = await asyncio.wait_for(self.fetch(url, headers, room, seconds), timeout=seconds)
            except TimeoutError:
                raise ResourceRefused("too_slow") from None
            self.received += len(exchange.body)
            if self.received > self.limits.bytes:
                raise ResourceRefused("too_large")
            self.resources.append(exchange)
            location = next((v for n, v in exchange.response_headers if n.lower() == "location"), None)
            if not (300 <= exchange.status < 400 and location):
                return exchange
            url = urljoin(exchange.url, location)
        raise ResourceRefused("redirects")


def _without_fragment(url: str) -> str:
    return url.split("#", 1)[0]


async def _quietly(action) -> None:
    """Await a route action; the page may already be closing (timeout), which is not worth a trace."""
    try:
        await action
    except PlaywrightError as error:
        logger.debug("route action failed: %s", error)
