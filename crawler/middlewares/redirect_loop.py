"""RedirectLoopMiddleware: names a redirect loop as an error instead of letting it vanish.

Scrapy follows a redirect by scheduling a new request; when the chain comes back to a URL it already
fetched, the duplicate filter drops it silently and the page simply never appears. This middleware
sits just below RedirectMiddleware, sees each 3xx response first, and fails the request with
``IgnoreRequest("redirect loop …")`` when its target is already in the chain.
"""

from __future__ import annotations

from urllib.parse import urljoin

from scrapy.exceptions import IgnoreRequest
from w3lib.url import safe_url_string


class RedirectLoopMiddleware:
    def __init__(self, stats):
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.stats)

    def process_response(self, request, response, spider=None):
        if response.status not in (301, 302, 303, 307, 308) or b"Location" not in response.headers:
            return response
        location = response.headers[b"Location"].decode("latin-1")
        target = safe_url_string(urljoin(request.url, location))
        chain = [*request.meta.get("redirect_urls", []), request.url]
        if target in chain:
            self.stats.inc_value("xunjian/redirect_loops")
            raise IgnoreRequest(f"redirect loop: {' -> '.join(chain + [target])}")
        return response
