"""Politeness and efficiency: Retry-After back-off, conditional requests, unchanged pages, URL
canonicalisation and the per-run page and time limits, with real servers on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crawler.middlewares.canonical import UrlCanonicalizer
from crawler.middlewares.retry_after import retry_after_seconds
from storage.db import open_database
from storage.models import CrawlRun, Evidence, Page, Snapshot
from tests.conftest import board_source

ROOT = Path(__file__).resolve().parent.parent

HUIZHI = """
[[source]]
name = "huizhi"
kind = "site"
start_urls = ["${XUNJIAN_DEMO_URL}/inst/huizhi/index.html"]
allowed_domains = ["127.0.0.1"]
allow_private = true
follow = ["/inst/huizhi/"]
max_depth = 3
"""


def crawl_job(tmp: Path, source: str, sources_text: str, env: dict) -> subprocess.CompletedProcess:
    sources = tmp / "sources.toml"
    sources.write_text(sources_text, encoding="utf-8")
    cmd = [sys.executable, "-m", "crawler.crawl_job", "--source", source, "--sources", str(sources),
           "--db", f"sqlite:///{tmp / 'xunjian.db'}", "--data-dir", str(tmp / "data")]
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=240)


def runs(tmp: Path) -> list[CrawlRun]:
    db = open_database(f"sqlite:///{tmp / 'xunjian.db'}", upgrade=False)
    try:
        with db.session() as session:
            return list(session.scalars(select(CrawlRun).order_by(CrawlRun.id)))
    finally:
        db.dispose()


def counts(tmp: Path) -> tuple[int, int, dict[str, datetime]]:
    db = open_database(f"sqlite:///{tmp / 'xunjian.db'}", upgrade=False)
    try:
        with db.session() as session:
            return (session.scalar(select(func.count(Snapshot.id))), session.scalar(select(func.count(Evidence.id))),
                    {p.url: p.last_seen for p in session.scalars(select(Page))})
    finally:
        db.dispose()


# --- canonicalisation ---------------------------------------------------------------------------

def test_canonical_urls_drop_sessions_tracking_and_fragments():
    c = UrlCanonicalizer(["utm_*", "jsessionid", "phpsessid", "sid", "sessionid", "spm"])
    assert c.canonical("http://a.cn/p.html?b=2&a=1#top") == "http://a.cn/p.html?a=1&b=2"
    assert c.canonical("http://a.cn/p;jsessionid=ABC123?id=5") == "http://a.cn/p?id=5"
    assert c.canonical("http://a.cn/p?id=5&PHPSESSID=x&utm_source=wx&utm_medium=m&sid=9&spm=a.b") == "http://a.cn/p?id=5"
    assert c.canonical("http://a.cn/p?sessionid=1") == "http://a.cn/p"
    # Same page, different decorations: one URL.
    assert c.canonical("http://a.cn/x?z=1&y=2&utm_campaign=c#f") == c.canonical("http://a.cn/x?y=2&z=1")
    # Parameters that select content are kept.
    assert c.canonical("http://a.cn/list?page=2&cat=math") == "http://a.cn/list?cat=math&page=2"


def test_trap_limits_on_length_and_parameters():
    c = UrlCanonicalizer([], max_length=60, max_params=3)
    assert c.trap("http://a.cn/cal?y=2026&m=1&d=2") is None
    assert c.trap("http://a.cn/cal?y=2026&m=1&d=2&h=3") == "too_many_params"
    assert c.trap("http://a.cn/" + "x" * 60) == "url_too_long"


def test_retry_after_values():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    assert retry_after_seconds(b"7") == 7.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert retry_after_seconds(b"soon") is None and retry_after_seconds(None) is None


# --- 429 / 503 with Retry-After ------------------------------------------------------------------

class BusyServer(ThreadingHTTPServer):
    """/a.html answers 429 (Retry-After: 2) once, /b.html 503 (Retry-After: 1) once, then 200."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), BusyHandler)
        self.hits: list[tuple[str, float, int, str]] = []  # path, server time, status, user agent
        self.lock = threading.Lock()
        self.refused: set[str] = set()


class BusyHandler(BaseHTTPRequestHandler):
    PAGES = {"/": '<a href="/a.html">a</a> <a href="/b.html">b</a>', "/a.html": "A 页", "/b.html": "B 页"}
    BUSY = {"/a.html": (429, "2"), "/b.html": (503, "1")}

    def do_GET(self):
        server = self.server
        with server.lock:
            first = self.path in self.BUSY and self.path not in server.refused
            server.refused.add(self.path)
            status, retry = self.BUSY[self.path] if first else (200 if self.path in self.PAGES else 404, None)
            server.hits.append((self.path, time.monotonic(), status, self.headers.get("User-Agent", "")))
        body = f"<html><body><p>{self.PAGES.get(self.path, 'none')}</p></body></html>".encode()
        self.send_response(status)
        if retry:
            self.send_header("Retry-After", retry)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_429_and_503_wait_for_retry_after(tmp_path):
    server = BusyServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        text = (f'[[source]]\nname = "busy"\nkind = "site"\nstart_urls = ["{base}/"]\nmax_depth = 1\n'
                "allow_private = true\n"
                "delay = 0.0\nconcurrency = 2\n")
        result = crawl_job(tmp_path, "busy", text, {"XUNJIAN_CONTACT": "ops@patrol.test"})
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    for path, wanted in (("/a.html", 2.0), (("/b.html"), 1.0)):
        hits = [h for h in server.hits if h[0] == path]
        assert [h[2] for h in hits] == [429 if path == "/a.html" else 503, 200]
        assert hits[1][1] - hits[0][1] >= wanted  # the server saw the retry no sooner than it asked
    agents = {h[3] for h in server.hits}
    assert all("xunjian" in ua and "ops@patrol.test" in ua for ua in agents), agents
    [run] = runs(tmp_path)
    assert run.finish_reason == "finished" and run.errors == 0
    assert run.stats["xunjian/backoff/count"] == 2
    assert run.stats["xunjian/backoff/http_429"] == 1 and run.stats["xunjian/backoff/http_503"] == 1
    assert run.stats["xunjian/backoff/seconds"] >= 3


# --- conditional requests and unchanged pages ------------------------------------------------------

@pytest.fixture(scope="module")
def logged_demo(tmp_path_factory):
    from crawler.demo.server import start_demo_server

    log = tmp_path_factory.mktemp("politeness-site") / "access.log"
    server = start_demo_server(access_log=log)
    try:
        yield server, log
    finally:
        server.stop()


def statuses(log: Path, start: int, prefix: str) -> list[int]:
    lines = log.read_text(encoding="utf-8").splitlines()[start:]
    return [int(line.split()[2]) for line in lines if line.startswith(f"GET {prefix}")]


def test_second_crawl_gets_304s_and_adds_nothing(logged_demo, tmp_path):
    server, log = logged_demo
    env = {"XUNJIAN_DEMO_URL": server.url}
    text = board_source() + HUIZHI
    first = crawl_job(tmp_path, "board", text, env)
    assert first.returncode == 0, first.stderr
    snapshots, evidence, seen_before = counts(tmp_path)
    assert snapshots >= 20 and evidence > 0
    start = len(log.read_text(encoding="utf-8").splitlines())
    second = crawl_job(tmp_path, "board", text, env)
    assert second.returncode == 0, second.stderr
    ads = statuses(log, start, "/board/ad/")
    assert ads.count(304) >= 20, ads  # conditional requests answered "not modified"
    assert 200 not in ads  # ... and nothing re-fetched in full, not even by the screenshot browser
    after_snapshots, after_evidence, seen_after = counts(tmp_path)
    assert (after_snapshots, after_evidence) == (snapshots, evidence)
    moved = [url for url, when in seen_after.items() if "/board/ad/" in url and when > seen_before[url]]
    assert len(moved) >= 20  # the 304 pages were seen again
    last = runs(tmp_path)[-1]
    assert last.stats["xunjian/not_modified"] == ads.count(304)
    assert last.new_findings == 0 and last.new_leads == 0
    assert last.pages >= ads.count(304)  # unchanged pages still count as pages of the run
    assert not any(k.startswith("xunjian/evidence/captured") for k in last.stats)


def test_unchanged_body_is_not_redetected(logged_demo, tmp_path):
    server, _ = logged_demo
    env = {"XUNJIAN_DEMO_URL": server.url}
    text = board_source() + HUIZHI
    assert crawl_job(tmp_path, "huizhi", text, env).returncode == 0
    before = counts(tmp_path)[:2]
    first_pages = runs(tmp_path)[-1].pages
    assert first_pages >= 3
    second = crawl_job(tmp_path, "huizhi", text, env)
    assert second.returncode == 0, second.stderr
    last = runs(tmp_path)[-1]
    # Navigation pages are fetched in full (their links are needed); an equal body skips the pipeline.
    assert last.stats["xunjian/unchanged"] >= 1
    # Every page was reached again (links of unchanged pages are still followed): no one-page crawl.
    assert last.stats["xunjian/unchanged"] + last.stats.get("xunjian/not_modified", 0) == first_pages
    assert last.pages == first_pages
    assert last.stats.get("xunjian/extracted", 0) + last.stats["xunjian/unchanged"] \
        + last.stats.get("xunjian/not_modified", 0) >= last.pages
    assert "xunjian/flagged_pages" not in last.stats  # nothing was run through detection again
    assert counts(tmp_path)[:2] == before


# --- per-run limits -------------------------------------------------------------------------------

def test_page_limit_closes_the_run(logged_demo, tmp_path):
    server, _ = logged_demo
    result = crawl_job(tmp_path, "board", board_source(max_pages=4) + HUIZHI,
                       {"XUNJIAN_DEMO_URL": server.url})
    assert result.returncode == 0, result.stderr
    [run] = runs(tmp_path)
    assert run.finish_reason == "closespider_pagecount"
    # Requests already handed to the downloader (at most CONCURRENT_REQUESTS) still complete once the
    # limit is reached, and robots.txt counts too; the whole board is over 50 responses.
    from crawler.settings import CONCURRENT_REQUESTS

    assert run.stats["response_received_count"] <= 4 + CONCURRENT_REQUESTS + 1


def test_time_limit_closes_the_run(logged_demo, tmp_path):
    server, _ = logged_demo
    result = crawl_job(tmp_path, "board", board_source(delay=1.0, extra="max_minutes = 0.05") + HUIZHI,
                       {"XUNJIAN_DEMO_URL": server.url})
    assert result.returncode == 0, result.stderr
    [run] = runs(tmp_path)
    assert run.finish_reason == "closespider_timeout"
    assert run.pages < 20
    assert not any(p.name != "broken" for p in (tmp_path / "data" / "jobs" / "board").iterdir())


def test_source_politeness_becomes_crawler_settings():
    from scrapy.settings import Settings

    from crawler.sources import Source
    from spiders.site import SiteSpider

    source = Source(name="s", kind="site", start_urls=("http://127.0.0.1:9/",), delay=1.5, concurrency=3,
                    max_minutes=2.5, max_pages=77, max_depth=4)
    s = Settings()
    s.setmodule("crawler.settings", priority="project")
    SiteSpider(source=source)._apply_source_settings(s)
    assert s.getbool("AUTOTHROTTLE_ENABLED") and s.getbool("ROBOTSTXT_OBEY")
    assert s.getfloat("AUTOTHROTTLE_START_DELAY") == 1.5 and s.getfloat("DOWNLOAD_DELAY") == 1.5
    assert s.getfloat("AUTOTHROTTLE_TARGET_CONCURRENCY") == 3.0 and s.getint("CONCURRENT_REQUESTS_PER_DOMAIN") == 3
    assert s.getfloat("CLOSESPIDER_TIMEOUT") == 150.0 and s.getint("CLOSESPIDER_PAGECOUNT") == 77
    assert s.getint("DEPTH_LIMIT") == 4
    assert "xunjian" in s.get("USER_AGENT") and "mailto:" in s.get("USER_AGENT")
    # The User-Agent names the version that is crawling (the installed package's, not a stale literal).
    from importlib.metadata import version

    assert s.get("USER_AGENT").startswith(f"xunjian/{version('xunjian')} ")
    # A source without its own values keeps the global defaults.
    plain = Settings()
    plain.setmodule("crawler.settings", priority="project")
    SiteSpider(source=Source(name="p", kind="site", start_urls=("http://127.0.0.1:9/",)))._apply_source_settings(plain)
    assert plain.getfloat("CLOSESPIDER_TIMEOUT") == 0 and plain.getfloat("AUTOTHROTTLE_START_DELAY") == 0.5
