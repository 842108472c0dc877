"""Network policy and size limits, with real crawls against a hostile server on 127.0.0.1.

The server binds only 127.0.0.1: a request to 169.254.169.254 could not be answered anyway, so the
tests check the refusal (stats, errors, the server's own request log), never a fetch."""

from __future__ import annotations

import json
import sqlite3
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import brotli
import pytest

from crawler.middlewares.netpolicy import HostSet, PolicyResolver
from crawler.netpolicy import Blocked, check_url
from crawler.runner import crawl_settings, private_hosts
from crawler.sources import Source
from tests.conftest import run_cli

MB = 1024 * 1024
METADATA = "http://169.254.169.254/latest/meta-data"


# --- the policy itself ----------------------------------------------------------------------------

@pytest.mark.parametrize("url, allow_private, reason", [
    ("http://127.0.0.1:8000/", False, "loopback"),
    ("http://10.1.2.3/", False, "private"),
    ("http://100.64.0.1/", False, "shared"),
    ("http://[::ffff:192.168.1.1]/", False, "private"),
    (METADATA, False, "link_local"),
    # allow_private waives loopback, private and shared ranges, never these:
    (METADATA, True, "link_local"),
    ("http://[::ffff:169.254.169.254]/", True, "link_local"),
    ("http://[fe80::1]/", True, "link_local"),
    ("http://224.0.0.1/", True, "multicast"),
    ("http://0.0.0.0/", True, "reserved"),
    ("http://240.0.0.1/", True, "reserved"),
    ("file:///etc/passwd", True, "scheme"),
])
def test_refused_addresses(url, allow_private, reason):
    with pytest.raises(Blocked) as refused:
        check_url(url, allow_private=allow_private)
    assert refused.value.reason == reason


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/", "http://10.1.2.3/", "http://100.64.0.1/", "http://[::1]/"])
def test_allow_private_lets_local_deployments_through(url):
    check_url(url, allow_private=True)


def test_resolver_judges_every_answer_it_hands_out():
    """DNS rebinding: a name that answered a public address may answer a private one next time; each
    answer is judged when the connection is about to use it."""
    resolver = PolicyResolver(None, 0, 5.0)
    resolver.private_hosts = HostSet(["demo.test"])
    assert resolver._judge("93.184.216.34", "rebind.test") == "93.184.216.34"
    with pytest.raises(Exception, match="refused by the network policy"):
        resolver._judge("10.0.0.7", "rebind.test")
    assert resolver.refused["rebind.test"] == ("private", "10.0.0.7")
    assert resolver._judge("127.0.0.1", "www.demo.test") == "127.0.0.1"  # an allow_private source's host
    with pytest.raises(Exception, match="link_local"):
        resolver._judge("169.254.169.254", "demo.test")  # never, whatever the source says


def test_private_hosts_come_from_allow_private_sources_only():
    sources = [Source(name="a", kind="site", start_urls=("http://demo.test:8000/x",), allowed_domains=("cdn.test",),
                      allow_private=True),
               Source(name="b", kind="site", start_urls=("http://intranet.test/",), allowed_domains=("intranet.test",))]
    assert private_hosts(sources) == ["cdn.test", "demo.test"]


def test_size_limits_default():
    settings = crawl_settings("sqlite://", None)
    assert settings.getint("DOWNLOAD_MAXSIZE") == 20 * MB
    assert settings.getint("DOWNLOAD_WARNSIZE") == 5 * MB


# --- a hostile site -------------------------------------------------------------------------------

def _gzip_bomb(inflated: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    chunk = b"\0" * MB
    return b"".join(packer.compress(chunk) for _ in range(inflated // MB)) + packer.flush()


def _brotli_bomb(inflated: int) -> bytes:
    packer = brotli.Compressor(quality=5)
    chunk = b"\0" * MB
    return b"".join(packer.process(chunk) for _ in range(inflated // MB)) + packer.finish()


def _page(title: str, links: list[str] = ()) -> bytes:
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    return f"<html><head><title>{title}</title></head><body><p>{title}</p>{anchors}</body></html>".encode()


class HostileSite(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), HostileHandler)
        self.fetched: list[str] = []
        self.bombs = {"/bomb.html": ("gzip", _gzip_bomb(100 * MB)), "/bomb-br.html": ("br", _brotli_bomb(100 * MB))}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class HostileHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        server = self.server
        server.fetched.append(self.path)
        if self.path == "/":
            self._send(_page("首页", ["/a.html", "/meta.html", "/to-metadata.html", "/big.html", "/bomb.html",
                                      "/bomb-br.html", "/stream.html", "/mid.html"]))
        elif self.path == "/a.html":
            self._send(_page("普通页面"))
        elif self.path == "/meta.html":
            self._send(_page("链接到元数据地址", [METADATA]))
        elif self.path == "/to-metadata.html":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/to-zero.html":  # 0.0.0.0 reaches this machine on Linux: reserved, always refused
            self.send_response(302)
            self.send_header("Location", f"http://0.0.0.0:{server.server_address[1]}/a.html")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/big.html":  # announces 60 MB; the crawler hangs up after the headers
            self._stream(60 * MB, length=True)
        elif self.path == "/stream.html":  # 60 MB with no Content-Length: counted while it arrives
            self._stream(60 * MB, length=False)
        elif self.path == "/mid.html":  # 2 MB: under the default limit, over the "tight" source's max_bytes
            self._send(_page("中等页面" + "字" * (2 * MB // 3)))
        elif self.path in server.bombs:  # about 100 KB of gzip, 165 bytes of brotli: 100 MB inflated
            encoding, body = server.bombs[self.path]
            self._send(body, encoding=encoding)
        elif self.path == "/img.html":
            self._send(f'<html><body><p>图片页</p><img src="{METADATA}/logo.png">'
                       f'<a href="/to-zero.html">下一页</a></body></html>'.encode())
        else:
            self.send_error(404)

    def _send(self, body: bytes, encoding: str | None = None):
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, size: int, length: bool):
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        if length:
            self.send_header("Content-Length", str(size))
        else:
            self.close_connection = True
        self.end_headers()
        chunk = b"<p>" + b"x" * (MB - 7) + b"</p>\n"
        try:
            for _ in range(size // MB):
                self.wfile.write(chunk)
        except OSError:  # the crawler hung up: the point of the test
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def site():
    server = HostileSite()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _run(tmp_path: Path, sources_text: str, *names: str):
    sources = tmp_path / "sources.toml"
    sources.write_text(sources_text, encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'x.db'}"
    args = [a for name in names for a in ("--source", name)]
    result = run_cli("crawl", "--sources", str(sources), *args, "--db", db,
                     env={"XUNJIAN_DATA_DIR": str(tmp_path / "data")})
    return result, db


def _runs(tmp_path: Path) -> dict[str, tuple[str, dict]]:
    with sqlite3.connect(tmp_path / "x.db") as conn:
        rows = conn.execute("select s.name, r.finish_reason, r.stats from crawl_runs r join sources s "
                            "on s.id = r.source_id").fetchall()
    return {name: (reason, json.loads(stats)) for name, reason, stats in rows}


def _stored(tmp_path: Path, base: str) -> set[str]:
    with sqlite3.connect(tmp_path / "x.db") as conn:
        return {url.removeprefix(base) for (url,) in conn.execute("select url from pages")}


def test_links_redirects_and_oversized_bodies_refused_while_the_crawl_goes_on(site, tmp_path):
    text = f"""
[[source]]
name = "hostile"
kind = "site"
start_urls = ["{site.url}/"]
# even a source that lists the metadata address among its domains cannot reach it
allowed_domains = ["127.0.0.1", "169.254.169.254"]
allow_private = true
max_depth = 2

[[source]]
name = "tight"
kind = "site"
start_urls = ["{site.url}/mid.html", "{site.url}/a.html"]
allow_private = true
max_depth = 0
max_bytes = {MB}

[[source]]
name = "rendered"
kind = "site"
start_urls = ["{site.url}/img.html"]
allow_private = true
render = true
max_depth = 1
"""
    result, db = _run(tmp_path, text)
    assert result.code == 0, result.err
    runs = _runs(tmp_path)

    reason, stats = runs["hostile"]
    assert reason == "finished"
    # the link to the metadata address and the redirect to it: refused before any connection
    assert stats["xunjian/blocked/link_local"] == 2 and stats["xunjian/errors/blocked_link_local"] == 2
    # 60 MB announced, 60 MB streamed without a length, 100 MB inflated from small gzip and brotli bodies
    assert stats["xunjian/refused/too_large"] == 4 and stats["xunjian/errors/too_large"] == 4
    stored = _stored(tmp_path, site.url)
    assert {"/", "/a.html", "/meta.html", "/mid.html"} <= stored
    assert not {"/big.html", "/stream.html", "/bomb.html", "/bomb-br.html", "/to-metadata.html"} & stored

    _, tight = runs["tight"]
    assert tight["xunjian/refused/too_large"] == 1  # 2 MB over the source's max_bytes of 1 MB
    assert tight["xunjian/store/pages"] == 1

    _, rendered = runs["rendered"]
    assert rendered["xunjian/blocked/link_local"] == 1  # chromium's image request, aborted
    # chromium followed the redirect itself; the page it ended on is refused, not kept
    assert rendered["xunjian/blocked/reserved"] == 1 and rendered["xunjian/errors/blocked_reserved"] == 1
    assert rendered["xunjian/store/pages"] == 1

    assert "blocked_link_local 2" in result.out and "too_large 4" in result.out  # the run summary
    history = run_cli("runs", "--db", db)
    assert history.code == 0 and "blocked_link_local 2" in history.out and "too_large 4" in history.out


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_private_start_url_without_allow_private_is_one_line_error(site, tmp_path, host):
    """A literal loopback address is refused by the middleware; ``localhost`` passes it as a name and
    is refused by the resolver, at connect time, when its answer turns out to be 127.0.0.1."""
    port = site.server_address[1]
    text = f'[[source]]\nname = "inside"\nkind = "site"\nstart_urls = ["http://{host}:{port}/"]\n'
    result, _ = _run(tmp_path, text)
    assert result.code == 1
    errors = [line for line in result.err.splitlines() if line.startswith("错误：")]
    assert len(errors) == 1 and f"http://{host}:{port}/" in errors[0] and "网络策略拒绝" in errors[0], result.err
    assert "Traceback" not in result.err
    assert site.fetched == []  # not even robots.txt
    reason, stats = _runs(tmp_path)["inside"]
    assert reason == "start_unreachable" and stats["xunjian/blocked/loopback"] == 1
    assert "retry/count" not in stats  # a refusal is final, not a DNS hiccup to retry


def test_allow_private_host_name_resolves_for_its_own_source(site, tmp_path):
    port = site.server_address[1]
    text = (f'[[source]]\nname = "local"\nkind = "site"\nstart_urls = ["http://localhost:{port}/a.html"]\n'
            f"allow_private = true\nmax_depth = 0\n")
    result, _ = _run(tmp_path, text)
    assert result.code == 0, result.err
    assert "/a.html" in site.fetched


def _render_spider(tmp_path: Path, chromium: str):
    from scrapy import signals
    from scrapy.crawler import Crawler
    from scrapy.settings import Settings
    from scrapy.statscollectors import MemoryStatsCollector

    from crawler.sources import find_source, load_sources
    from spiders.site import SiteSpider

    sources = tmp_path / "sources.toml"
    sources.write_text('[[source]]\nname = "r"\nkind = "site"\nstart_urls = ["http://127.0.0.1:1/"]\n'
                       "allow_private = true\nrender = true\n", encoding="utf-8")
    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")
    settings.set("XUNJIAN_CHROMIUM", chromium)
    settings.set("PLAYWRIGHT_LAUNCH_OPTIONS", {**settings.getdict("PLAYWRIGHT_LAUNCH_OPTIONS"),
                                               "executable_path": chromium})
    crawler = Crawler(SiteSpider, settings)
    spider = SiteSpider.from_crawler(crawler, source=find_source(load_sources(sources), "r"))
    crawler.stats = MemoryStatsCollector(crawler)  # as Crawler.crawl() does once the spider is built
    crawler.signals.send_catch_log(signals.spider_opened, spider=spider)
    return crawler, spider, lambda: crawler.signals.send_catch_log(signals.spider_closed, spider=spider)


def test_render_browser_is_sandboxed_and_its_wrapper_removed_when_the_spider_closes(tmp_path):
    """The scrapy-playwright browser gets the launch options the spider chose: chromium's own sandbox
    (as ``nobody`` through the wrapper when root), proved by chrome://sandbox, and none of our env."""
    import asyncio
    import os

    from playwright.async_api import async_playwright

    crawler, _, close = _render_spider(tmp_path, "/usr/bin/chromium")
    options = crawler.settings.getdict("PLAYWRIGHT_LAUNCH_OPTIONS")
    assert options["chromium_sandbox"] is True and "--no-sandbox" not in options["args"]
    assert "XUNJIAN_DB_URL" not in options["env"]
    assert "xunjian/render/unsandboxed" not in crawler.stats.get_stats()

    async def sandbox_page():
        async with async_playwright() as p:
            browser = await p.chromium.launch(**options)
            try:
                page = await browser.new_page()
                await page.goto("chrome://sandbox")
                text = await page.inner_text("body")
                uids = {os.stat(f"/proc/{pid}").st_uid for pid in os.listdir("/proc") if pid.isdigit()
                        and _cmdline(pid).startswith("/usr/lib/chromium/chromium")}
                return text, uids
            finally:
                await browser.close()

    text, uids = asyncio.run(sandbox_page())
    assert "You are adequately sandboxed" in text, text
    if os.geteuid() == 0:
        assert uids == {65534}  # nobody, never root
        wrapper = Path(options["executable_path"])
        assert wrapper.exists()
        close()
        assert not wrapper.parent.exists()


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""


def test_render_browser_falls_back_to_no_sandbox_with_one_warning_and_a_stat(tmp_path, caplog):
    """A chromium whose sandbox cannot start (here: one that says so and exits) is launched unsandboxed."""
    import tempfile

    with tempfile.TemporaryDirectory() as public:  # readable by nobody, unlike pytest's tmp_path
        Path(public).chmod(0o755)
        fake = Path(public) / "chromium"
        fake.write_text("#!/bin/sh\necho 'No usable sandbox!' >&2\nexit 1\n", encoding="utf-8")
        fake.chmod(0o755)
        with caplog.at_level("WARNING"):
            crawler, _, _ = _render_spider(tmp_path, str(fake))
    options = crawler.settings.getdict("PLAYWRIGHT_LAUNCH_OPTIONS")
    assert options["chromium_sandbox"] is False and options["executable_path"] == str(fake)
    assert crawler.stats.get_value("xunjian/render/unsandboxed") == 1
    warnings = [r.getMessage() for r in caplog.records if "sandbox" in r.getMessage()]
    assert len(warnings) == 1 and "No usable sandbox!" in warnings[0], warnings
