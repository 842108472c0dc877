"""Full-page PNG screenshots with Debian's chromium, driven by Playwright's async API.

One browser per process, launched on the first screenshot and shared by every crawler in the process
(the CLI runs several sources in one Twisted/asyncio reactor); it is closed when the last user
releases it. Each screenshot gets a fresh browser context, a bounded time and a cap on parallel pages.
The main document's exact bytes are kept as well (see ``_DocumentRecorder``) for the WARC file.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from playwright.async_api import Browser, Playwright, Route, async_playwright
from playwright.async_api import Error as PlaywrightError

from crawler.evidence.warc import HttpExchange

logger = logging.getLogger(__name__)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}


@dataclass
class BrowserCapture:
    png: bytes
    captured_at: datetime  # when the screenshot was taken (aware UTC)
    document: HttpExchange | None  # the main document as chromium received it, when readable


class ScreenshotError(Exception):
    """A screenshot could not be taken; ``str()`` is one line naming the URL and the reason."""


class SharedBrowser:
    """A lazily launched chromium shared by reference count."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.users = 0
        self._lock = asyncio.Lock()
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    async def get(self) -> Browser:
        async with self._lock:
            if self._browser is None or not self._browser.is_connected():
                await self._stop()
                self._playwright = await async_playwright().start()
                self._browser = await self._playwright.chromium.launch(
                    executable_path=self.executable, headless=True, args=CHROMIUM_ARGS
                )
            return self._browser

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
                 parallel: int = 2) -> None:
        self.executable = executable
        self.user_agent = user_agent
        self.timeout = timeout
        self._browser: SharedBrowser | None = None
        self._slots = asyncio.Semaphore(max(1, parallel))

    async def capture(self, url: str) -> BrowserCapture:
        """A full-page PNG of ``url`` and the document chromium loaded; raises ScreenshotError."""
        if not os.access(self.executable, os.X_OK):
            raise ScreenshotError(f"截图失败：{url}：找不到可执行的 chromium：{self.executable}")
        if self._browser is None:
            self._browser = acquire_browser(self.executable)
        async with self._slots:
            try:
                return await asyncio.wait_for(self._capture(url), timeout=self.timeout)
            except asyncio.TimeoutError:
                raise ScreenshotError(f"截图超时（{self.timeout:g} 秒）：{url}") from None
            except PlaywrightError as error:
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise ScreenshotError(f"截图失败：{url}：{reason}") from error

    async def _capture(self, url: str) -> BrowserCapture:
        browser = await self._browser.get()
        context = await browser.new_context(
            viewport=VIEWPORT, device_scale_factor=1, locale="zh-CN",
            user_agent=self.user_agent, service_workers="block",
        )
        try:
            page = await context.new_page()
            step = self.timeout * 1000 * 0.6
            documents: list[HttpExchange] = []
            await page.route("**/*", _DocumentRecorder(url, documents, step))
            await page.goto(url, wait_until="load", timeout=step)
            try:
                await page.wait_for_load_state("networkidle", timeout=min(step, 3000))
            except PlaywrightError:
                pass  # a page that keeps polling is still worth its screenshot
            png = await page.screenshot(full_page=True, type="png", timeout=step)
            return BrowserCapture(png=png, captured_at=datetime.now(timezone.utc),
                                  document=documents[-1] if documents else None)
        finally:
            await context.close()

    async def close(self) -> None:
        if self._browser is not None:
            browser, self._browser = self._browser, None
            await browser.release()


# Headers that describe the transfer, not the document; Playwright hands over a decoded body.
_TRANSFER_HEADERS = {"content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive"}


class _DocumentRecorder:
    """Route handler that fetches main-frame documents itself, so their exact bytes can be archived.

    Chromium reports a text document's body re-encoded as UTF-8 (a GBK page would lose its bytes), so
    navigation requests of the main frame are fetched with ``route.fetch`` (raw bytes, one hop at a
    time so the browser still follows redirects itself) and handed to the browser unchanged.
    """

    def __init__(self, url: str, documents: list[HttpExchange], timeout_ms: float) -> None:
        self.url = url
        self.documents = documents
        self.timeout_ms = timeout_ms

    async def __call__(self, route: Route) -> None:
        request = route.request
        try:
            main_document = request.is_navigation_request() and request.frame.parent_frame is None
        except PlaywrightError:
            main_document = False
        if not main_document:
            await _quietly(route.continue_())
            return
        fetched_at = datetime.now(timezone.utc)
        try:
            response = await route.fetch(max_redirects=0, timeout=self.timeout_ms)
            body = await response.body()
            request_headers = [(h["name"], h["value"]) for h in await request.headers_array()]
            response_headers = [(h["name"], h["value"]) for h in response.headers_array]
            server = await response.server_addr()
        except PlaywrightError as error:
            logger.debug("main document %s not fetched by the route: %s", request.url, error)
            await _quietly(route.continue_())
            return
        self.documents.append(HttpExchange(
            url=request.url,
            requested_url=self.url,
            method=request.method,
            protocol="HTTP/1.1",
            request_headers=[h for h in request_headers if not h[0].startswith(":")],
            status=response.status,
            response_headers=response_headers,
            body=body,
            fetched_at=fetched_at,
            ip_address=server["ipAddress"] if server else None,
            decoded_content=True,
            extra={"fetched-by": "chromium page route (Playwright route.fetch), for the screenshot"},
        ))
        await _quietly(route.fulfill(
            status=response.status,
            headers={name: value for name, value in response.headers.items()
                     if name.lower() not in _TRANSFER_HEADERS},
            body=body,
        ))


async def _quietly(action) -> None:
    """Await a route action; the page may already be closing (timeout), which is not worth a trace."""
    try:
        await action
    except PlaywrightError as error:
        logger.debug("route action failed: %s", error)
