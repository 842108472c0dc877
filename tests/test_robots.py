"""robots.txt per RFC 9309: rules obeyed, 4xx means no rules, an unreachable robots.txt keeps the crawler out.

A small site on 127.0.0.1 whose robots.txt answers as each test asks (rules, 404, 500, or a dropped
connection); the real ``xunjian crawl`` runs against it and the server's own log shows what was fetched.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import run_cli

PAGES = {
    "/": '<html><body><h1>首页</h1><a href="/a.html">课程</a> <a href="/private/x.html">内部</a></body></html>',
    "/a.html": "<html><body><h1>课程介绍</h1><p>成人书法兴趣班，周末上课。</p></body></html>",
    "/private/x.html": "<html><body><h1>内部页面</h1><p>不应被抓取。</p></body></html>",
}

RULES = "User-agent: *\nDisallow: /private/\n"


class RobotsSite(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, robots_mode: str):
        self.robots_mode = robots_mode
        self.fetched: list[str] = []
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: RobotsSite

    def do_GET(self) -> None:
        self.server.fetched.append(self.path)
        if self.path == "/robots.txt":
            mode = self.server.robots_mode
            if mode == "drop":  # the connection closes with no answer at all
                self.close_connection = True
                return
            if mode == "slow":  # the rules arrive late: every start request is waiting for them
                time.sleep(0.5)
            status, body = {"rules": (200, RULES), "slow": (200, RULES),
                            "missing": (404, "not found"), "error": (500, "server error")}[mode]
        elif self.path in PAGES:
            status, body = 200, PAGES[self.path]
        else:
            status, body = 404, "not found"
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8" if self.path.endswith(".txt")
                         else "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def site(request):
    server = RobotsSite(request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _crawl(site: RobotsSite, tmp_path: Path, paths: tuple[str, ...] = ("/",)):
    sources = tmp_path / "sources.toml"
    starts = ", ".join(f'"{site.url}{path}"' for path in paths)
    sources.write_text(f'[[source]]\nname = "robots-site"\nkind = "site"\nstart_urls = [{starts}]\n'
                       f'max_depth = 2\nallow_private = true\n', encoding="utf-8")
    db = tmp_path / "x.db"
    result = run_cli("crawl", "--sources", str(sources), "--db", f"sqlite:///{db}",
                     env={"XUNJIAN_DATA_DIR": str(tmp_path / "data")})
    with sqlite3.connect(db) as conn:
        reason, stats = conn.execute("select finish_reason, stats from crawl_runs").fetchone()
    return result, reason, json.loads(stats)


def _pages(site: RobotsSite) -> set[str]:
    return {path for path in site.fetched if path != "/robots.txt"}


@pytest.mark.parametrize("site", ["rules"], indirect=True)
def test_disallowed_path_is_never_fetched(site, tmp_path):
    result, reason, stats = _crawl(site, tmp_path)
    assert result.code == 0, result.err
    assert reason == "finished"
    assert _pages(site) == {"/", "/a.html"}
    assert stats["xunjian/robots_forbidden"] == 1


@pytest.mark.parametrize("site", ["slow"], indirect=True)
def test_requests_waiting_for_robots_txt_all_get_its_rules(site, tmp_path):
    """Several requests wait while robots.txt is on its way (start URLs; in Redis mode, a worker's first
    batch from the shared queue). Scrapy 2.19's middleware hands the rules to the first waiter only and
    lets the others through; every one of them must be judged by the rules."""
    private = ("/private/x.html", "/private/y.html", "/private/z.html")
    result, _, stats = _crawl(site, tmp_path, ("/", *private))
    assert result.code == 0, result.err
    assert _pages(site) == {"/", "/a.html"}
    assert site.fetched.count("/robots.txt") == 1
    assert stats["xunjian/robots_forbidden"] == len(private)


@pytest.mark.parametrize("site", ["missing"], indirect=True)
def test_missing_robots_txt_means_no_rules(site, tmp_path):
    result, _, _ = _crawl(site, tmp_path)
    assert result.code == 0, result.err
    assert _pages(site) == set(PAGES)


@pytest.mark.parametrize("site", ["error", "drop"], indirect=True)
def test_unreachable_robots_txt_keeps_the_crawler_off_the_host(site, tmp_path):
    """Scrapy's own middleware would allow everything here; xunjian fetches nothing but robots.txt."""
    result, reason, stats = _crawl(site, tmp_path)
    assert _pages(site) == set()
    assert "/robots.txt" in site.fetched
    assert reason == "start_unreachable"
    assert stats["xunjian/errors/robots_unreachable"] == 1
    assert result.code == 1
    errors = [line for line in result.err.splitlines() if line.startswith("错误：")]
    cause = "HTTP 500" if site.robots_mode == "error" else "robots.txt 无法读取："
    assert len(errors) == 1 and "robots.txt 无法读取" in errors[0] and cause in errors[0], result.err
