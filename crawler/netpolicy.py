"""The network policy: which addresses xunjian may fetch from.

Crawled pages are hostile: a link, a redirect or a subresource can point at the office's intranet,
at loopback or at a cloud metadata address (169.254.169.254), and whatever answers would be archived
as "evidence".  Every outbound door (the downloader, redirects, the screenshot browser's requests,
the webhook, image fetches) asks this module before it connects.  Only http and https to public
addresses pass, unless the caller says private addresses are allowed (a source with
``allow_private = true``: the bundled demo and the tests, which serve on 127.0.0.1).

``allow_private`` waives only what a local deployment needs (loopback, private ranges and CGNAT
shared space); link-local addresses (the metadata address), multicast and reserved ranges stay refused.

``check_url`` raises ``Blocked`` with a machine-readable ``reason`` (used in stats keys such as
``xunjian/blocked/private``) and a one-line Chinese message naming the URL.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

ALLOWED_SCHEMES = ("http", "https")

# reason -> what an inspector reads
REASONS = {
    "scheme": "不允许的网址协议（只允许 http 和 https）",
    "invalid": "网址无效",
    "unresolvable": "域名无法解析",
    "loopback": "本机回环地址",
    "private": "内网地址",
    "link_local": "链路本地地址（含云主机元数据地址 169.254.169.254）",
    "shared": "运营商级 NAT 共享地址（100.64.0.0/10）",
    "multicast": "组播地址",
    "reserved": "保留或未指定地址",
}


class Blocked(Exception):
    """A URL the network policy refuses; ``reason`` is a key of ``REASONS``."""

    def __init__(self, url: str, reason: str, address: str | None = None):
        self.url = url
        self.reason = reason
        self.address = address
        where = f"（解析为 {address}）" if address and address not in url else ""
        super().__init__(f"网络策略拒绝访问 {url}{where}：{REASONS.get(reason, reason)}")


_SHARED = ipaddress.ip_network("100.64.0.0/10")
# What ``allow_private`` waives; everything else non-public is refused whatever the source says.
WAIVABLE = frozenset({"loopback", "private", "shared"})


def address_reason(address: str) -> str | None:
    """Why ``address`` (an IPv4 or IPv6 literal) is not public, or None when it is public."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return "invalid"
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv4 inside IPv6 (::ffff:10.0.0.1, 64:ff9b::/96 NAT64, 2002::/16 6to4) is judged as IPv4
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is None and ip in ipaddress.ip_network("64:ff9b::/96"):
            mapped = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if mapped is not None:
            return address_reason(str(mapped))
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "shared"
    if ip.is_unspecified or ip.is_reserved:
        return "reserved"
    if ip.is_private:  # 10/8, 172.16/12, 192.168/16, fc00::/7 (ULA) and the other special ranges
        return "private"
    if not ip.is_global:
        return "reserved"
    return None


def is_public(address: str) -> bool:
    return address_reason(address) is None


def refusal(address: str, *, allow_private: bool = False) -> str | None:
    """Why the policy refuses ``address``, or None when it may be fetched (``allow_private``: see WAIVABLE)."""
    reason = address_reason(address)
    if reason is None or (allow_private and reason in WAIVABLE):
        return None
    return reason


def resolve(host: str, port: int | None = None) -> list[str]:
    """Every address ``host`` resolves to (all of them are checked: one private answer is enough)."""
    infos = socket.getaddrinfo(host, port or 80, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def check_url(url: str, *, allow_private: bool = False, resolve_host: bool = True) -> None:
    """Raise ``Blocked`` unless ``url`` is http(s) to a public address (or, with ``allow_private``, a
    loopback, private or shared one).

    A literal IP is judged as it is; a host name is resolved and every answer judged, unless
    ``resolve_host`` is false: the crawler judges host names at connect time instead, in its resolver
    (crawler/middlewares/netpolicy.py), which also defeats DNS rebinding."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise Blocked(url, "invalid") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise Blocked(url, "scheme")
    if not host:
        raise Blocked(url, "invalid")
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        addresses = [host]
    except ValueError:
        if not resolve_host:
            return
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError):
            raise Blocked(url, "unresolvable") from None
    for address in addresses:
        reason = refusal(address, allow_private=allow_private)
        if reason is not None:
            raise Blocked(url, reason, address)
