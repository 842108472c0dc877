"""RetryAfterMiddleware: a 429 or 503 slows the crawl down instead of being hammered again at once.

The response's ``Retry-After`` (seconds or an HTTP date; ``XUNJIAN_BACKOFF_DEFAULT`` when absent),
capped at ``XUNJIAN_BACKOFF_MAX``, pauses every request to that host (its download slot) until the time
has passed; the failed request is then retried, at most ``XUNJIAN_BACKOFF_RETRIES`` times, after which
the response goes on to the spider's error handling as an ordinary HTTP error. Counted in the stats
under ``xunjian/backoff/*``.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from scrapy.downloadermiddlewares.retry import get_retry_request
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet import reactor, task

BACKOFF_STATUSES = (429, 503)


def retry_after_seconds(value: bytes | str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for, or None when it is missing or unreadable."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


class RetryAfterMiddleware:
    def __init__(self, crawler):
        settings = crawler.settings
        self.crawler = crawler
        self.stats = crawler.stats
        self.default = settings.getfloat("XUNJIAN_BACKOFF_DEFAULT", 10.0)
        self.cap = settings.getfloat("XUNJIAN_BACKOFF_MAX", 300.0)
        self.retries = settings.getint("XUNJIAN_BACKOFF_RETRIES", 3)
        self.paused_until: dict[str, float] = {}

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def _slot(self, request) -> str:
        return self.crawler.engine.downloader.get_slot_key(request)

    async def process_request(self, request, spider=None):
        until = self.paused_until.get(self._slot(request), 0.0)
        wait = until - time.monotonic()
        if wait > 0:
            await maybe_deferred_to_future(task.deferLater(reactor, wait, lambda: None))
        return None

    def process_response(self, request, response, spider=None):
        if response.status not in BACKOFF_STATUSES:
            return response
        asked = retry_after_seconds(response.headers.get(b"Retry-After"))
        wait = min(self.cap, self.default if asked is None else asked)
        retry = get_retry_request(
            request,
            spider=self.crawler.spider,
            reason=f"http_{response.status}",
            max_retry_times=self.retries,
            stats_base_key="xunjian/backoff/retry",
        )
        if retry is None:
            self.stats.inc_value("xunjian/backoff/gave_up")
            return response
        slot = self._slot(request)
        self.paused_until[slot] = max(self.paused_until.get(slot, 0.0), time.monotonic() + wait)
        self.stats.inc_value("xunjian/backoff/count")
        self.stats.inc_value(f"xunjian/backoff/http_{response.status}")
        self.stats.inc_value("xunjian/backoff/seconds", wait)
        if self.crawler.spider is not None:
            self.crawler.spider.logger.info("HTTP %s from %s: waiting %.1f s before retrying",
                                            response.status, request.url, wait)
        return retry
