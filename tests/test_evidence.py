"""Evidence capture end to end: a local site that changes between crawls, the real CLI, SQLite and chromium.

One module-scoped scenario runs four crawls in subprocesses (Twisted's reactor cannot restart):
1. first crawl: flagged pages get WARC + screenshot + text; clean pages get nothing;
2. the same site again: nothing is captured, nothing on disk changes;
3. the ad is edited and the GBK page is removed: new snapshot, new evidence, old evidence kept;
4. a crawl into a fresh database with an unusable browser: pages and their WARC/text are still stored.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import struct
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select
from warcio.archiveiterator import ArchiveIterator

from crawler.evidence.wacz import build_wacz
from storage.db import open_database
from storage.evidence import evidence_for_snapshots, sha256_file, verify_file
from storage.models import CrawlRun, Evidence, Page, Snapshot
from tests.conftest import run_cli

AD_V1 = "初三数学寒假冲刺班，名师一对一辅导，保证提分30分，不提分全额退款！报名电话13912345678"
AD_V2 = "初三数学寒假冲刺班第二期，清华名师授课，保证提分50分，不提分全额退款！报名电话13912345678"
GBK_AD = "小学语文暑假集训班开课啦，北大名师授课，签约保过，考不上重点中学退全款。咨询微信 abc_jiaoyu8"
JS_AD = "初三物理寒假直播课，名师授课，保证提分30分，不提分全额退款！报名电话13912345678"
CLEAN = "本周六社区图书馆照常开放，欢迎居民借阅图书。"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EVIDENCE_PATH = re.compile(r"evidence/sha256/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})\.(warc|png|txt)")


def html(title: str, body: str, charset: str = "utf-8") -> str:
    return (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="{charset}"><title>{title}</title></head>'
            f"<body><h1>{title}</h1>{body}</body></html>")


def initial_pages() -> dict[str, tuple[str, bytes]]:
    index = html("首页", '<a href="/ad.html">广告</a> <a href="/gbk.html">旧广告</a> <a href="/clean.html">资讯</a>')
    script = f"<div id=\"list\"></div><script>document.getElementById('list').innerHTML = '<p>{JS_AD}</p>';</script>"
    return {
        "/robots.txt": ("text/plain", b"User-agent: *\nAllow: /\n"),
        "/index.html": ("text/html; charset=utf-8", index.encode("utf-8")),
        "/ad.html": ("text/html; charset=utf-8", html("初三数学寒假冲刺班", f"<p>{AD_V1}</p>").encode("utf-8")),
        "/gbk.html": ("text/html; charset=gbk", html("小学语文暑假班", f"<p>{GBK_AD}</p>", "gbk").encode("gbk")),
        "/clean.html": ("text/html; charset=utf-8", html("社区图书馆开放时间", f"<p>{CLEAN}</p>").encode("utf-8")),
        "/js.html": ("text/html; charset=utf-8", html("课程中心", script).encode("utf-8")),
    }


class ChangingSite(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), SiteHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.pages = initial_pages()


class SiteHandler(BaseHTTPRequestHandler):
    server: ChangingSite
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        page = self.server.pages.get(self.path.split("?")[0])
        status, (ctype, body) = (200, page) if page else (404, ("text/plain", b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass


SOURCES = """
[[source]]
name = "evtest"
kind = "site"
start_urls = ["{base}/index.html"]
allowed_domains = ["127.0.0.1"]
allow_private = true
follow = ["/(ad|gbk|clean)\\\\.html$"]
max_depth = 1
max_pages = 20

[[source]]
name = "evtest-js"
kind = "site"
start_urls = ["{base}/js.html"]
allowed_domains = ["127.0.0.1"]
allow_private = true
follow = ["/js\\\\.html$"]
render = true
max_depth = 1
max_pages = 5
"""


def evidence_rows(db_url: str) -> dict[str, list[tuple[str, Evidence]]]:
    """url -> [(snapshot content hash, Evidence row), ...] in snapshot order."""
    db = open_database(db_url)
    with db.session() as s:
        rows = s.execute(
            select(Page.url, Snapshot.content_hash, Evidence)
            .join(Snapshot, Snapshot.page_id == Page.id)
            .join(Evidence, Evidence.snapshot_id == Snapshot.id)
            .order_by(Snapshot.id, Evidence.kind)
        ).all()
        s.expunge_all()
    db.dispose()
    out: dict[str, list] = {}
    for url, content_hash, row in rows:
        out.setdefault(url.rsplit("/", 1)[1], []).append((content_hash, row))
    return out


def snapshots(db_url: str) -> dict[str, list[Snapshot]]:
    db = open_database(db_url)
    with db.session() as s:
        rows = s.execute(select(Page.url, Snapshot).join(Snapshot, Snapshot.page_id == Page.id).order_by(Snapshot.id)).all()
        s.expunge_all()
    db.dispose()
    out: dict[str, list[Snapshot]] = {}
    for url, snap in rows:
        out.setdefault(url.rsplit("/", 1)[1], []).append(snap)
    return out


def unchanged_before_pipeline(db_url: str, after_run: int) -> int:
    """Pages of the runs with id > after_run found unchanged before the item pipeline (304 or same hash)."""
    db = open_database(db_url)
    with db.session() as s:
        runs = list(s.scalars(select(CrawlRun).where(CrawlRun.id > after_run)))
    db.dispose()
    return sum(int(r.stats.get("xunjian/unchanged", 0)) + int(r.stats.get("xunjian/not_modified", 0)) for r in runs)


def evidence_stats(db_url: str, after_run: int) -> dict[str, int]:
    """Summed xunjian/evidence/* stats of the runs with id > after_run."""
    db = open_database(db_url)
    with db.session() as s:
        runs = list(s.scalars(select(CrawlRun).where(CrawlRun.id > after_run)))
    db.dispose()
    total: dict[str, int] = {}
    for run in runs:
        for key, value in run.stats.items():
            if key.startswith("xunjian/evidence/"):
                name = key.removeprefix("xunjian/evidence/")
                total[name] = total.get(name, 0) + value
    return total


def last_run(db_url: str) -> int:
    db = open_database(db_url)
    with db.session() as s:
        run_id = max(s.scalars(select(CrawlRun.id)))
    db.dispose()
    return run_id


def disk_state(data: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(data)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in (data / "evidence").rglob("*") if p.is_file()}


def crawl(scenario: dict, db_url: str, env: dict | None = None) -> None:
    result = run_cli("crawl", "--sources", str(scenario["sources"]), "--db", db_url,
                     env={"XUNJIAN_DATA_DIR": str(scenario["data"]), **(env or {})}, timeout=180)
    assert result.code == 0, result.err[-2000:]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evidence")
    site = ChangingSite()
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    sources = tmp / "sources.toml"
    sources.write_text(SOURCES.replace("{base}", site.url), encoding="utf-8")
    sc = {"tmp": tmp, "site": site, "sources": sources, "data": tmp / "data",
          "db": f"sqlite:///{tmp / 'xunjian.db'}", "served": dict(site.pages)}
    try:
        crawl(sc, sc["db"])
        sc["first_rows"] = evidence_rows(sc["db"])
        sc["first_disk"] = disk_state(sc["data"])
        sc["first_stats"] = evidence_stats(sc["db"], 0)
        run1 = last_run(sc["db"])

        crawl(sc, sc["db"])
        sc["second_rows"] = evidence_rows(sc["db"])
        sc["second_disk"] = disk_state(sc["data"])
        sc["second_stats"] = evidence_stats(sc["db"], run1)
        sc["second_skipped_early"] = unchanged_before_pipeline(sc["db"], run1)
        run2 = last_run(sc["db"])

        site.pages["/ad.html"] = ("text/html; charset=utf-8",
                                  html("初三数学寒假冲刺班（第二期）", f"<p>{AD_V2}</p>").encode("utf-8"))
        del site.pages["/gbk.html"]
        crawl(sc, sc["db"])
        sc["third_rows"] = evidence_rows(sc["db"])
        sc["third_stats"] = evidence_stats(sc["db"], run2)

        sc["nobrowser_db"] = f"sqlite:///{tmp / 'nobrowser.db'}"
        sc["nobrowser_sources"] = tmp / "nobrowser.toml"
        first_source = SOURCES.replace("{base}", site.url).split("[[source]]")[1]
        sc["nobrowser_sources"].write_text("[[source]]" + first_source, encoding="utf-8")
        result = run_cli("crawl", "--sources", str(sc["nobrowser_sources"]), "--db", sc["nobrowser_db"],
                         env={"XUNJIAN_DATA_DIR": str(tmp / "data2"), "XUNJIAN_CHROMIUM": str(tmp / "no-such-chromium")},
                         timeout=180)
        assert result.code == 0, result.err[-2000:]
        yield sc
    finally:
        site.shutdown()
        site.server_close()


def warc_records(path: Path) -> list[tuple[str, dict, object, bytes]]:
    out = []
    with open(path, "rb") as handle:
        for record in ArchiveIterator(handle):
            headers = dict(record.rec_headers.headers)
            out.append((record.rec_type, headers, record.http_headers, record.content_stream().read()))
    return out


def kinds(rows) -> list[str]:
    return sorted(row.kind for _, row in rows)


# --- first crawl ---------------------------------------------------------------------------------------

def test_flagged_pages_get_three_files_matching_the_database(scenario):
    rows = scenario["first_rows"]
    assert set(rows) == {"ad.html", "gbk.html", "js.html"}
    data = scenario["data"]
    ext = {"warc": "warc", "screenshot": "png", "text": "txt"}
    media = {"warc": "application/warc", "screenshot": "image/png", "text": "text/plain; charset=utf-8"}
    for name, page_rows in rows.items():
        assert kinds(page_rows) == ["screenshot", "text", "warc"], name
        for _, row in page_rows:
            match = EVIDENCE_PATH.fullmatch(row.path)
            assert match, row.path
            assert match.group(3) == row.sha256 and match.group(1) + match.group(2) == row.sha256[:4]
            assert match.group(4) == ext[row.kind] and row.media_type == media[row.kind]
            path = data / row.path
            assert sha256_file(path) == row.sha256 and path.stat().st_size == row.size
            assert row.captured_at.tzinfo is not None


def test_unflagged_pages_get_no_evidence(scenario):
    snaps = snapshots(scenario["db"])
    assert "clean.html" in snaps and "index.html" in snaps
    assert not snaps["clean.html"][0].categories
    assert "clean.html" not in scenario["first_rows"] and "index.html" not in scenario["first_rows"]
    assert scenario["first_stats"].get("skipped_unflagged", 0) >= 2
    assert scenario["first_stats"]["captured"] == 3


def test_warc_holds_request_and_gbk_response_byte_for_byte(scenario):
    (warc,) = [row for _, row in scenario["first_rows"]["gbk.html"] if row.kind == "warc"]
    records = warc_records(scenario["data"] / warc.path)
    types = [r[0] for r in records]
    assert types == ["warcinfo", "request", "response", "metadata"]  # the screenshot fetched nothing more
    _, req_headers, req_http, req_body = records[1]
    _, resp_headers, resp_http, resp_body = records[2]
    assert req_headers["WARC-Concurrent-To"] == resp_headers["WARC-Record-ID"]
    assert req_headers["WARC-Target-URI"] == scenario["site"].url + "/gbk.html"
    assert req_http.protocol == "GET" and req_http.statusline.startswith("/gbk.html")
    assert req_http.get_header("User-Agent").startswith("xunjian/")
    assert resp_http.get_statuscode() == "200"
    assert resp_http.get_header("Content-Type") == "text/html; charset=gbk"
    served = scenario["served"]["/gbk.html"][1]
    assert resp_body == served
    assert GBK_AD.encode("gbk") in resp_body and GBK_AD.encode("utf-8") not in resp_body
    fields = records[3][3].decode("utf-8")
    assert "rendered: false" in fields
    assert "screenshot: the crawl body above" in fields


def test_rendered_page_keeps_the_detected_dom_and_is_not_fetched_again(scenario):
    (warc,) = [row for _, row in scenario["first_rows"]["js.html"] if row.kind == "warc"]
    records = warc_records(scenario["data"] / warc.path)
    assert [r[0] for r in records] == ["warcinfo", "request", "response", "metadata"]
    assert f"<p>{JS_AD}</p>".encode("utf-8") in records[2][3]  # what Scrapy got through the browser
    fields = records[3][3].decode("utf-8")
    assert "rendered: true" in fields and "the page was not fetched again" in fields
    snap = snapshots(scenario["db"])["js.html"][0]
    assert "exaggerated_marketing" in snap.categories or "banned_ad" in snap.categories


def test_screenshot_is_a_full_width_png(scenario):
    for name in ("ad.html", "gbk.html", "js.html"):
        (shot,) = [row for _, row in scenario["first_rows"][name] if row.kind == "screenshot"]
        data = (scenario["data"] / shot.path).read_bytes()
        assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
        width, height = struct.unpack(">II", data[16:24])
        assert width >= 800 and height >= 300, (name, width, height)
        assert len(data) > 10_000  # rendered text, not a blank page


def test_text_file_is_the_extracted_text(scenario):
    snap = snapshots(scenario["db"])["gbk.html"][0]
    (text,) = [row for _, row in scenario["first_rows"]["gbk.html"] if row.kind == "text"]
    content = (scenario["data"] / text.path).read_bytes().decode("utf-8")
    assert content == snap.text and GBK_AD in content


def test_evidence_api_returns_absolute_verifiable_paths(scenario):
    snap = snapshots(scenario["db"])["ad.html"][0]
    db = open_database(scenario["db"])
    views = evidence_for_snapshots(db, [snap.id], root=scenario["data"])
    db.dispose()
    assert [v.kind for v in views] == ["warc", "screenshot", "text"]
    for view in views:
        assert view.path.is_absolute() and view.snapshot_id == snap.id
        assert verify_file(view.path, view.sha256)


# --- second crawl: unchanged --------------------------------------------------------------------------

def test_unchanged_pages_are_not_captured_again(scenario):
    assert scenario["second_stats"].get("captured", 0) == 0
    # Unchanged pages (all five stored by the first crawls, three of them flagged) are recognised before
    # the item pipeline (a 304, or the spider seeing the stored content hash): nothing reaches extraction,
    # detection or the evidence pipeline.
    assert scenario["second_skipped_early"] == 5
    assert scenario["second_stats"].get("skipped_unchanged", 0) == 0
    assert not any(key.startswith(("files/", "reused/")) for key in scenario["second_stats"])
    assert scenario["second_disk"] == scenario["first_disk"]
    first = {n: [(h, r.sha256) for h, r in rows] for n, rows in scenario["first_rows"].items()}
    second = {n: [(h, r.sha256) for h, r in rows] for n, rows in scenario["second_rows"].items()}
    assert first == second


# --- third crawl: changed and removed -----------------------------------------------------------------

def test_changed_content_gets_new_evidence_and_keeps_the_old(scenario):
    rows = scenario["third_rows"]["ad.html"]
    hashes = list(dict.fromkeys(h for h, _ in rows))
    assert len(hashes) == 2 and kinds(rows) == sorted(["screenshot", "text", "warc"] * 2)
    old = [r for h, r in rows if h == hashes[0]]
    new = [r for h, r in rows if h == hashes[1]]
    assert {r.sha256 for r in old}.isdisjoint({r.sha256 for r in new})
    assert scenario["third_stats"]["captured"] == 1
    for row in old + new:
        assert verify_file(scenario["data"] / row.path, row.sha256)
    (new_warc,) = [r for r in new if r.kind == "warc"]
    body = warc_records(scenario["data"] / new_warc.path)[2][3]
    assert AD_V2.encode("utf-8") in body and AD_V1.encode("utf-8") not in body


def test_removed_page_keeps_its_evidence(scenario):
    assert "/gbk.html" not in scenario["site"].pages
    rows = scenario["third_rows"]["gbk.html"]
    assert [r.sha256 for _, r in rows] == [r.sha256 for _, r in scenario["first_rows"]["gbk.html"]]
    for _, row in rows:
        assert verify_file(scenario["data"] / row.path, row.sha256)
    (warc,) = [r for _, r in rows if r.kind == "warc"]
    assert warc_records(scenario["data"] / warc.path)[2][3] == scenario["served"]["/gbk.html"][1]


# --- failures -----------------------------------------------------------------------------------------

def test_screenshot_failure_keeps_the_page_and_other_evidence(scenario):
    rows = evidence_rows(scenario["nobrowser_db"])
    assert set(rows) == {"ad.html"}  # gbk.html is gone from the site by now; js.html is not crawled here
    for name, page_rows in rows.items():
        assert kinds(page_rows) == ["text", "warc"], name
    stats = evidence_stats(scenario["nobrowser_db"], 0)
    assert stats["failed/screenshot"] == stats["captured"] == len(rows)


def warc_records_from(data: bytes):
    return [(r.rec_type, None, r.http_headers, r.content_stream().read()) for r in ArchiveIterator(io.BytesIO(data))]


# --- WACZ ---------------------------------------------------------------------------------------------

def test_build_wacz_packages_the_warcs_with_hashes(scenario, tmp_path):
    warcs = [scenario["data"] / r.path for name in ("ad.html", "gbk.html")
             for _, r in scenario["first_rows"][name] if r.kind == "warc"]
    out = build_wacz(warcs, tmp_path / "lead-1.wacz")
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        assert {f"archive/{p.name}" for p in warcs} <= names
        assert {"datapackage.json", "indexes/index.cdx.gz", "pages/pages.jsonl"} <= names
        for p in warcs:
            assert z.read(f"archive/{p.name}") == p.read_bytes()
        package = json.loads(z.read("datapackage.json"))
        digests = {res["path"]: res["hash"] for res in package["resources"]}
        for p in warcs:
            assert digests[f"archive/{p.name}"] == "sha256:" + sha256_file(p)
        pages = [json.loads(line) for line in z.read("pages/pages.jsonl").decode("utf-8").splitlines()[1:]]
        assert sorted(pg["url"].rsplit("/", 1)[1] for pg in pages) == ["ad.html", "gbk.html"]
        index = gzip.decompress(z.read("indexes/index.cdx.gz")).decode("utf-8")
        assert "/gbk.html" in index and "/ad.html" in index
    from wacz.main import main as wacz_main

    assert wacz_main(["validate", "-f", str(out)]) == 0
