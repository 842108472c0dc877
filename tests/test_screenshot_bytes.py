"""The screenshot shows the bytes the crawler received, not a second visit (issue 14, points 2 and 6).

A cloaking site on 127.0.0.1 serves its ad page once (red, "第1次访问") and, from the second request on,
a 302 to another 127.0.0.1 server standing for the intranet. One real crawl (CLI in a subprocess, SQLite,
Debian's chromium) must leave a WARC, a screenshot and a detected text of the first body, never touch
the other server — neither by a second visit nor by a script, a frame or a redirected image — keep
subresources inside robots.txt, the network policy and the count cap, and bound an endless page's height.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import pytest
from warcio.archiveiterator import ArchiveIterator

from crawler.evidence.screenshot import Limits, Screenshotter
from tests.conftest import run_cli
from tests.test_evidence import evidence_rows, snapshots

AD = "初三数学寒假冲刺班，名师一对一辅导，保证提分30分，不提分全额退款！报名电话13912345678"
LOGO = b"logo bytes, archived as served"
METADATA = "169.254.169.254/latest/meta-data/"


class Server(ThreadingHTTPServer):
    """A 127.0.0.1 server that records every path asked for; ``answer(path, count)`` makes the reply."""

    daemon_threads = True

    def __init__(self, answer) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.answer = answer
        self.hits: list[str] = []
        self.lock = threading.Lock()

    def __enter__(self) -> Self:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.hits.append(self.path)
            count = self.server.hits.count(self.path)
        status, headers, body = self.server.answer(self.path, count)
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass


def page(body: str, style: str = "") -> bytes:
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>寒假冲刺班</title></head>'
            f'<body style="margin:0;{style}"><h1 style="font-size:64px">{body}</h1><p>{AD}</p></body></html>'
            ).encode("utf-8")


def intranet_answer(path: str, count: int):
    return 200, {"Content-Type": "text/html; charset=utf-8"}, f"<h1>内网 {METADATA}</h1>".encode("utf-8")


def site_answer(intranet: str):
    html = {"Content-Type": "text/html; charset=utf-8"}

    def answer(path: str, count: int):
        if path == "/robots.txt":
            return 200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private/\n"
        if path == "/cloak.html":
            if count > 1:  # the cloaker's second answer: off to the "intranet"
                return 302, {"Location": f"{intranet}/metadata"}, b""
            extras = ('<link rel="stylesheet" href="/style.css"><img src="/logo.png"><img src="/private/secret.png">'
                      f'<img src="http://{METADATA}"><img src="/bounce.png"><img src="/cloak.html#again">')
            return 200, html, page(f"第{count}次访问{extras}", "background:#ff0000")
        if path == "/beacon.html":
            script = (f"<script>fetch('{intranet}/fetch'); new Image().src = '{intranet}/image';"
                      f"navigator.sendBeacon('{intranet}/beacon'); location.href = '{intranet}/navigate';</script>")
            return 200, html, page(f"脚本{script}<iframe src='{intranet}/frame'></iframe>")
        if path == "/tall.html":
            images = "".join(f'<img src="/img/{i}.png" width="10" height="10">' for i in range(60))
            return 200, html, page(f"无尽页面{images}<div style='height:40000px'></div>")
        if path == "/style.css":
            return 200, {"Content-Type": "text/css"}, b"h1 { font-family: sans-serif; }"
        if path == "/logo.png" or path.startswith("/img/"):
            return 200, {"Content-Type": "image/png"}, LOGO
        if path == "/bounce.png":
            return 302, {"Location": f"http://{METADATA}bounce.png"}, b""
        return 404, {"Content-Type": "text/plain"}, b"not found"

    return answer


# The endless page is a source of its own: its crawler has its own downloader, so its sixty images do not
# queue in front of the cloaking page's (subresources are throttled per site like pages).
SOURCES = """
[[source]]
name = "cloak"
kind = "site"
start_urls = ["{site}/cloak.html", "{site}/beacon.html"]
allowed_domains = ["127.0.0.1"]
deny = ["."]
delay = 0
concurrency = 8
allow_private = true

[[source]]
name = "endless"
kind = "site"
start_urls = ["{site}/tall.html"]
allowed_domains = ["127.0.0.1"]
deny = ["."]
delay = 0
concurrency = 8
allow_private = true
"""


def sandbox_possible() -> bool:
    """Whether chromium can sandbox itself here: user namespaces for an unprivileged user (as root,
    chromium runs as nobody)."""
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if shutil.which("setpriv") else []
    return subprocess.run([*prefix, "unshare", "-U", "true"], capture_output=True, check=False).returncode == 0


def first_pixel(png: bytes) -> tuple[int, int, int]:
    """The top-left pixel of an 8-bit RGB(A) PNG: in the first row no filter changes the first pixel."""
    assert png[12:16] == b"IHDR" and png[24] == 8 and png[25] in (2, 6)
    data, pos = b"", 8
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        if kind == b"IDAT":
            data += png[pos + 8:pos + 8 + length]
        pos += 12 + length
    row = zlib.decompressobj().decompress(data, 16)
    return tuple(row[1:4])


def png_size(png: bytes) -> tuple[int, int]:
    return struct.unpack(">II", png[16:24])


def warc_records(path: Path) -> list[tuple[str, str, bytes, int | None]]:
    """(type, target URI, payload, HTTP status) of every record."""
    out = []
    with open(path, "rb") as handle:
        for record in ArchiveIterator(handle):
            status = int(record.http_headers.get_statuscode()) if record.rec_type == "response" else None
            out.append((record.rec_type, record.rec_headers.get_header("WARC-Target-URI"),
                        record.content_stream().read(), status))
    return out


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shotbytes")
    with Server(intranet_answer) as intranet, Server(site_answer(intranet.url)) as site:
        sources = tmp / "sources.toml"
        sources.write_text(SOURCES.replace("{site}", site.url), encoding="utf-8")
        db = f"sqlite:///{tmp / 'x.db'}"
        result = run_cli("crawl", "--sources", str(sources), "--db", db,
                         env={"XUNJIAN_DATA_DIR": str(tmp / "data")}, timeout=240)
        assert result.code == 0, result.err[-3000:]
        rows = evidence_rows(db)
        files = {name: {row.kind: (tmp / "data" / row.path) for _, row in page_rows} for name, page_rows in rows.items()}
        logs = "".join(p.read_text(encoding="utf-8", errors="replace") for p in (tmp / "data" / "logs").rglob("*")
                       if p.is_file())
        yield {"site": site, "intranet": intranet, "db": db, "files": files, "log": logs + result.err}


def test_the_cloaking_page_was_fetched_once_and_the_intranet_never(crawl):
    assert crawl["site"].hits.count("/cloak.html") == 1
    assert crawl["intranet"].hits == []  # no second visit, no script, frame, beacon or redirected image


def test_warc_screenshot_and_text_all_hold_the_first_body(crawl):
    files = crawl["files"]["cloak.html"]
    records = warc_records(files["warc"])
    page_url = crawl["site"].url + "/cloak.html"
    responses = [(uri, body, status) for kind, uri, body, status in records if kind == "response"]
    assert responses[0][0] == page_url and "第1次访问".encode("utf-8") in responses[0][1]
    assert [uri for uri, _, _ in responses].count(page_url) == 1  # the page itself once: Scrapy's fetch
    assert first_pixel(files["screenshot"].read_bytes()) == (255, 0, 0)  # the red first body, not the intranet
    text = files["text"].read_text(encoding="utf-8")
    assert "第1次访问" in text and AD in text
    assert snapshots(crawl["db"])["cloak.html"][0].text == text


def test_subresources_are_archived_within_robots_and_the_network_policy(crawl):
    site = crawl["site"]
    records = warc_records(crawl["files"]["cloak.html"]["warc"])
    responses = {uri.removeprefix(site.url): (body, status)
                 for kind, uri, body, status in records if kind == "response"}
    assert responses["/logo.png"] == (LOGO, 200) and responses["/style.css"][1] == 200
    assert responses["/bounce.png"][1] == 302  # the hop is archived; where it pointed was refused
    assert "/private/secret.png" not in site.hits  # robots.txt disallows it
    metadata = records[-1][2].decode("utf-8")
    assert f"screenshot-refused: {site.url}/private/secret.png (download_robots_forbidden)" in metadata
    assert f"screenshot-refused: http://{METADATA} (blocked_link_local)" in metadata
    assert f"screenshot-refused: {site.url}/bounce.png (blocked_link_local)" in metadata
    assert f"screenshot-refused: {site.url}/cloak.html (page_itself)" in metadata  # chromium drops the #again
    assert "the page was not fetched again" in metadata


def test_scripts_do_not_run_and_frames_are_not_loaded_on_a_page_without_render(crawl):
    metadata = warc_records(crawl["files"]["beacon.html"]["warc"])[-1][2].decode("utf-8")
    refused = [line for line in metadata.splitlines() if line.startswith("screenshot-refused:")]
    # the frame was refused; the script's fetch, image, beacon and navigation were never even attempted
    assert refused == [f"screenshot-refused: {crawl['intranet'].url}/frame (type_document)"]


def test_an_endless_page_is_cut_at_the_height_limit_and_its_images_at_the_count_limit(crawl):
    files = crawl["files"]["tall.html"]
    width, height = png_size(files["screenshot"].read_bytes())
    assert width >= 800 and height == Limits.height
    metadata = warc_records(files["warc"])[-1][2].decode("utf-8")
    assert metadata.count("(too_many)") == 60 - Limits.resources  # refused before any request
    fetched = [hit for hit in crawl["site"].hits if hit.startswith("/img/")]
    assert 0 < len(fetched) <= Limits.resources  # the rest of the 50 when the 10 seconds ran out first


def test_chromium_is_sandboxed_where_the_platform_allows_and_says_so_otherwise(crawl):
    metadata = warc_records(crawl["files"]["cloak.html"]["warc"])[-1][2].decode("utf-8")
    if sandbox_possible():
        assert "screenshot-sandbox: chromium sandbox" in metadata
        assert "chromium sandbox unavailable" not in crawl["log"]
    else:
        assert "screenshot-sandbox: none (--no-sandbox fallback)" in metadata
        assert crawl["log"].count("chromium sandbox unavailable") == 1


def test_a_source_without_allow_private_gets_no_private_subresource():
    calls: list[str] = []

    async def fetch(url, headers, max_bytes, seconds):  # the crawl's downloader; must not be reached
        calls.append(url)
        raise AssertionError(url)

    async def shoot(url: str):
        shooter = Screenshotter("/usr/bin/chromium", timeout=30, fetch=fetch)
        try:
            return await shooter.capture("https://example.org/ad.html", f'<p>{AD}</p><img src="{url}/x.png">')
        finally:
            await shooter.close()

    with Server(intranet_answer) as intranet:
        shot = asyncio.run(shoot(intranet.url))
    assert shot.refused == [(f"{intranet.url}/x.png", "blocked_loopback")]
    assert calls == [] and intranet.hits == [] and shot.resources == []
