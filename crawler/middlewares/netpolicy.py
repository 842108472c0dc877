"""The network policy (crawler/netpolicy.py) applied to everything the crawl fetches.

* ``NetworkPolicyMiddleware`` (downloader middleware 40, before anything else looks at a request, so
  a refused URL is never asked for its robots.txt either) checks every request: start URLs, followed
  links, robots.txt requests and each redirect hop (RedirectMiddleware hands the engine a new Request,
  which comes through the downloader middlewares again). Literal addresses are judged here against the
  source's ``allow_private``.
* ``PolicyResolver`` (``TWISTED_DNS_RESOLVER``) judges host names at connect time, on the very answer
  the connection will use, so a name that answered a public address to an earlier look-up and a private
  one now (DNS rebinding) is still refused, and the reactor thread never waits for DNS. There is one
  resolver per process: host names of sources with ``allow_private`` (``XUNJIAN_PRIVATE_HOSTS``, set
  by the runner from the sources being crawled) may resolve to loopback, private or shared addresses;
  a source without ``allow_private`` that asks for one of those names is judged by the middleware with
  a look-up of its own.
* ``ResolverRefusalMiddleware`` (950, next to the downloader) turns the resolver's refusal, which Twisted
  reports as a failed look-up, back into the policy's refusal before RetryMiddleware retries it.
* ``BrowserRequestGuard`` (``PLAYWRIGHT_ABORT_REQUEST`` of a source with ``render = true``) aborts the
  requests chromium makes on its own (the page's images, scripts, frames) that the policy refuses.
  Chromium follows redirects without showing them to that hook, so the middleware also refuses a
  rendered page whose final URL the policy refuses: it is not kept, though chromium did ask for it.

Every refusal is counted (``xunjian/blocked`` and ``xunjian/blocked/<reason>``) and logged in one line
with the URL; the request fails with ``NetworkBlocked``, which the spider counts as the error kind
``blocked_<reason>`` (a refused start URL ends the crawl as ``start_unreachable``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from urllib.parse import urlsplit

from scrapy.exceptions import CannotResolveHostError, IgnoreRequest
from scrapy.resolver import CachingThreadedResolver
from scrapy.utils.datatypes import LocalCache
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.error import DNSLookupError

from crawler.netpolicy import REASONS, WAIVABLE, Blocked, check_url, refusal

logger = logging.getLogger(__name__)


class NetworkBlocked(IgnoreRequest):
    """A request the network policy refused; ``blocked`` says why (its URL is the request's, or where
    the request was redirected to)."""

    def __init__(self, blocked: Blocked, request_url: str):
        super().__init__(str(blocked))
        self.blocked = blocked
        self.request_url = request_url

    @property
    def reason(self) -> str:
        """For the inspector, after the request's URL: why the page was not fetched."""
        b = self.blocked
        target = f" {b.url}" if b.url != self.request_url else ""
        where = f"（解析为 {b.address}）" if b.address and b.address not in b.url else ""
        hint = "；来源设置 allow_private = true 后才允许" if b.reason in WAIVABLE else ""
        return f"网络策略拒绝访问{target}{where}：{REASONS.get(b.reason, b.reason)}{hint}"


def refuse(stats, blocked: Blocked, request_url: str | None = None) -> NetworkBlocked:
    """Count and log one refusal; returns the exception that fails the request."""
    stats.inc_value("xunjian/blocked")
    stats.inc_value(f"xunjian/blocked/{blocked.reason}")
    resolved = blocked.address and blocked.address not in blocked.url
    logger.warning("network policy refused %s (%s%s)", blocked.url, blocked.reason,
                   f", resolved to {blocked.address}" if resolved else "")
    return NetworkBlocked(blocked, request_url or blocked.url)


class HostSet:
    """Host names and their subdomains (as ``allowed_domains`` reads), case-insensitive."""

    def __init__(self, names):
        self.names = frozenset(n.lower().rstrip(".") for n in names if n)

    def __contains__(self, host: str) -> bool:
        labels = host.lower().rstrip(".").split(".")
        return any(".".join(labels[i:]) in self.names for i in range(len(labels)))


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class NetworkPolicyMiddleware:
    def __init__(self, crawler):
        self.crawler = crawler
        self.stats = crawler.stats
        self.private_hosts = HostSet(crawler.settings.getlist("XUNJIAN_PRIVATE_HOSTS"))

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def _allow_private(self) -> bool:
        return bool(getattr(getattr(self.crawler.spider, "source", None), "allow_private", False))

    def process_request(self, request, spider=None):
        allow = self._allow_private()
        host = urlparse_cached(request).hostname or ""
        # The process-wide resolver lets these names answer private addresses (for another source).
        own_lookup = not allow and host in self.private_hosts
        try:
            check_url(request.url, allow_private=allow, resolve_host=own_lookup)
        except Blocked as blocked:
            raise refuse(self.stats, blocked) from None

    def process_response(self, request, response, spider=None):
        """A rendered page's redirects happen inside chromium, where the abort hook never sees them
        (Playwright's routes skip redirects): a page that ended up somewhere refused is not kept.
        Scrapy's own responses always carry their request's URL (its redirects are new requests)."""
        if response.url != request.url:
            try:
                check_url(response.url, allow_private=self._allow_private())
            except Blocked as blocked:
                raise refuse(self.stats, blocked, request.url) from None
        return response


class ResolverRefusalMiddleware:
    def __init__(self, stats):
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.stats)

    def process_exception(self, request, exception, spider=None):
        if not isinstance(exception, (CannotResolveHostError, DNSLookupError)):
            return
        from twisted.internet import reactor

        resolver = getattr(reactor, "resolver", None)  # the one the process installed
        host = urlparse_cached(request).hostname or ""
        found = resolver.refused.get(host) if isinstance(resolver, PolicyResolver) else None
        if found is not None:  # else a genuine DNS failure: retried and reported as such
            reason, address = found
            raise refuse(self.stats, Blocked(request.url, reason, address)) from None


class _RefusedLookup(DNSLookupError):
    """A DNSLookupError, so that Twisted ends the resolution quietly (any other error is logged with a
    traceback) and the connection fails as "no address"."""


class PolicyResolver(CachingThreadedResolver):
    """Scrapy's caching resolver, with every answer judged when it is used (cached answers too)."""

    def __init__(self, reactor, cache_size: int, timeout: float):
        super().__init__(reactor, cache_size, timeout)
        self.private_hosts = HostSet(())
        self.refused: LocalCache[str, tuple[str, str]] = LocalCache(1000)  # host -> (reason, address)

    @classmethod
    def from_crawler(cls, crawler, reactor):
        resolver = super().from_crawler(crawler, reactor)
        resolver.private_hosts = HostSet(crawler.settings.getlist("XUNJIAN_PRIVATE_HOSTS"))
        return resolver

    def getHostByName(self, name: str, timeout=()):
        self.refused.pop(name, None)
        return super().getHostByName(name, timeout).addCallback(self._judge, name)

    def _judge(self, address: str, name: str) -> str:
        if _is_literal(name):  # a literal URL was judged by the middleware, against its source's flag
            return address
        reason = refusal(address, allow_private=name in self.private_hosts)
        if reason is None:
            return address
        self.refused[name] = (reason, address)
        raise _RefusedLookup(f"{name} resolved to {address}, refused by the network policy ({reason})")


class BrowserRequestGuard:
    """Aborts chromium's requests the policy refuses (scrapy-playwright's ``PLAYWRIGHT_ABORT_REQUEST``).

    Chromium resolves names itself, so a host name is resolved and judged here, in a thread (the
    answer chromium gets a moment later is not seen: the rebinding check covers Scrapy's own fetches).
    ``data:`` and ``blob:`` URLs never leave the browser and pass."""

    def __init__(self, crawler, allow_private: bool):
        self.crawler = crawler
        self.allow_private = allow_private

    async def __call__(self, request) -> bool:
        if urlsplit(request.url).scheme in ("data", "blob"):
            return False
        try:
            await asyncio.to_thread(check_url, request.url, allow_private=self.allow_private)
        except Blocked as blocked:
            refuse(self.crawler.stats, blocked)
            return True
        return False
