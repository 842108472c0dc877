"""StrictRobotsTxtMiddleware: when robots.txt cannot be read, nothing on that host is fetched.

Scrapy's own RobotsTxtMiddleware fails open: if the robots.txt request raises (a dropped connection,
a timeout), every URL of the host is allowed for the rest of the crawl, and a robots.txt answered
with 5xx is parsed as if the error page were the file. For an inspection crawler that must be able to
show it stayed out of disallowed paths, xunjian follows RFC 9309 instead:

* 2xx: the body is the rules (Scrapy's parser);
* 4xx ("unavailable", also a redirect chain Scrapy gave up on): no rules, everything may be fetched;
* 5xx or no answer at all ("unreachable"): the whole host is disallowed for the rest of the run.
  Requests to it fail with ``RobotsUnreachable`` (counted as the error kind ``robots_unreachable``,
  not as a robots refusal; a start URL refused this way makes the run ``start_unreachable``, so the
  source's health raises an alert), and the next run asks for robots.txt again.

The robots.txt request itself is retried like any other request (Scrapy's RetryMiddleware and
xunjian's Retry-After back-off) before it counts as unreachable.

Every request that arrives while robots.txt is still on its way waits for the rules on a Deferred of its
own. Scrapy 2.19's middleware awaits the host's shared Deferred directly; Twisted's ``asFuture`` replaces
a Deferred's result with None for the callbacks after it, so only the first waiter got the rules and the
others were let through as if there were none (seen with several start URLs, and with a Redis worker
whose first batch from the shared queue held a disallowed page).
"""

from __future__ import annotations

import logging

from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.defer import Deferred

logger = logging.getLogger(__name__)


class RobotsUnreachable(IgnoreRequest):
    """robots.txt of the request's host could not be read (5xx or no answer): the host is off limits."""

    def __init__(self, netloc: str, cause: str, url: str):
        super().__init__(f"robots.txt unreachable for {netloc} ({cause}): {url}")
        self.netloc = netloc
        self.cause = cause

    @property
    def reason(self) -> str:
        """For the inspector: why the page was not fetched."""
        return f"robots.txt 无法读取：{self.cause}"


class _Unreachable:
    """Stands in for a parser while a host's robots.txt is unreachable."""

    def __init__(self, netloc: str, cause: str):
        self.netloc = netloc
        self.cause = cause

    def allowed(self, url, user_agent) -> bool:  # RobotParser interface: nothing is allowed
        return False


class _AllowAll:
    """robots.txt answered 4xx: RFC 9309 says there are no rules."""

    def allowed(self, url, user_agent) -> bool:
        return True


class StrictRobotsTxtMiddleware(RobotsTxtMiddleware):
    async def robot_parser(self, request):
        pending = self._parsers.get(urlparse_cached(request).netloc)
        if not isinstance(pending, Deferred):
            return await super().robot_parser(request)  # known already, or this request fetches robots.txt
        own: Deferred = Deferred()

        def relay(parser):
            own.callback(parser)
            return parser  # the next waiter's callback gets the parser too

        pending.addCallback(relay)
        return await maybe_deferred_to_future(own)

    def process_request_2(self, rp, request) -> None:
        if isinstance(rp, _Unreachable):
            self._stats.inc_value("robotstxt/unreachable_refused")
            raise RobotsUnreachable(rp.netloc, rp.cause, request.url)
        super().process_request_2(rp, request)

    async def _parse_robots(self, response, netloc: str, request) -> None:
        status = response.status
        if 200 <= status < 300:
            await super()._parse_robots(response, netloc, request)
            return
        self._stats.inc_value("robotstxt/response_count")
        self._stats.inc_value(f"robotstxt/response_status_count/{status}")
        if 300 <= status < 500:  # 4xx, or redirects beyond the redirect limit: no rules
            self._settle(netloc, _AllowAll())
        else:
            self._unreachable(netloc, f"HTTP {status}")

    def _robots_error(self, exc: Exception, netloc: str) -> None:
        if not isinstance(exc, IgnoreRequest):
            self._stats.inc_value(f"robotstxt/exception_count/{type(exc)}")
        self._unreachable(netloc, f"{type(exc).__name__}: {exc}".rstrip(": "))

    def _unreachable(self, netloc: str, cause: str) -> None:
        logger.warning("robots.txt of %s unreachable (%s): nothing on this host is fetched in this run",
                       netloc, cause)
        self._stats.inc_value("robotstxt/unreachable")
        self._settle(netloc, _Unreachable(netloc, cause))

    def _settle(self, netloc: str, parser) -> None:
        waiting = self._parsers.get(netloc)
        self._parsers[netloc] = parser
        if isinstance(waiting, Deferred) and not waiting.called:
            waiting.callback(parser)
