"""CanonicalUrlMiddleware: one URL per page, so session ids, tracking tags and shuffled queries are no trap.

Every request the spider yields is rewritten to its canonical form before the depth middleware and the
duplicate filter see it: the fragment is dropped, ``;jsessionid=…`` path parameters and query
parameters that are session ids or tracking tags are removed, and the remaining parameters are sorted.
A URL still longer than ``XUNJIAN_URL_MAX_LENGTH`` or with more than ``XUNJIAN_URL_MAX_PARAMS`` query
parameters (an endless calendar or filter combination) is not followed and is counted.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from scrapy import Request
from w3lib.url import canonicalize_url

CACHE_SIZE = 50_000
DEFAULT_DROP = ("utm_*", "jsessionid", "phpsessid", "sid", "sessionid")
_PATH_SESSION_RE = re.compile(r";(?:jsessionid|phpsessid|sessionid|sid)=[^/?#]*", re.I)


class UrlCanonicalizer:
    def __init__(self, drop: tuple[str, ...] | list[str] = DEFAULT_DROP, max_length: int = 1024, max_params: int = 8):
        self.drop = tuple(p.lower() for p in drop)
        self.max_length = max_length
        self.max_params = max_params

    def dropped(self, name: str) -> bool:
        name = name.lower()
        return any(fnmatchcase(name, pattern) for pattern in self.drop)

    def canonical(self, url: str) -> str:
        parts = urlsplit(url)
        path = _PATH_SESSION_RE.sub("", parts.path)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not self.dropped(k)]
        rebuilt = urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), ""))
        return canonicalize_url(rebuilt, keep_fragments=False)

    def trap(self, url: str) -> str | None:
        """Why a canonical URL is not followed (``url_too_long`` / ``too_many_params``), or None."""
        if self.max_length and len(url) > self.max_length:
            return "url_too_long"
        if self.max_params and len(parse_qsl(urlsplit(url).query, keep_blank_values=True)) > self.max_params:
            return "too_many_params"
        return None


class CanonicalUrlMiddleware:
    def __init__(self, crawler):
        settings = crawler.settings
        self.stats = crawler.stats
        self.canonicalizer = UrlCanonicalizer(
            settings.getlist("XUNJIAN_URL_DROP_PARAMS") or DEFAULT_DROP,
            settings.getint("XUNJIAN_URL_MAX_LENGTH", 1024),
            settings.getint("XUNJIAN_URL_MAX_PARAMS", 8),
        )
        self._cache: dict[str, tuple[str, str | None]] = {}

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def _canonical(self, url: str) -> tuple[str, str | None]:
        # Pages link to the same URLs over and over; parsing and rebuilding each one is most of the cost.
        known = self._cache.get(url)
        if known is None:
            canonical = self.canonicalizer.canonical(url)
            known = (canonical, self.canonicalizer.trap(canonical))
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[url] = known
        return known

    def _rewrite(self, request: Request, spider) -> Request | None:
        url, reason = self._canonical(request.url)
        if reason is not None:
            self.stats.inc_value(f"xunjian/traps/{reason}")
            if spider is not None:
                spider.logger.debug("not following %s: %s", reason, request.url)
            return None
        if url != request.url:
            self.stats.inc_value("xunjian/traps/canonicalized")
            return request.replace(url=url)
        return request

    async def process_start(self, start):
        async for item in start:
            out = self._rewrite(item, None) if isinstance(item, Request) else item
            if out is not None:
                yield out

    async def process_spider_output_async(self, response, result, spider=None):
        async for item in result:
            out = self._rewrite(item, spider) if isinstance(item, Request) else item
            if out is not None:
                yield out

    def process_spider_output(self, response, result, spider=None):
        for item in result:
            out = self._rewrite(item, spider) if isinstance(item, Request) else item
            if out is not None:
                yield out
