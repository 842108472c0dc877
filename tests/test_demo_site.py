"""The bundled demo site, exercised over real HTTP against its own answer key."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import pytest
from parsel import Selector

from crawler.demo import DEMO_SOURCES, SOURCES_FILE, load_answer_key, start_demo_server
from crawler.demo.content import CATEGORIES
from crawler.demo.keygen import derive_answer_key, render_key, KEY_FILE



@pytest.fixture(scope="module")
def site():
    with start_demo_server() as server:
        yield server


@pytest.fixture(scope="module")
def key():
    return load_answer_key()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def fetch(url: str, headers: dict | None = None, follow: bool = True) -> tuple[int, dict, bytes]:
    """(status, headers, body) for ``url``; HTTP errors are returned, not raised."""
    opener = urllib.request.build_opener() if follow else urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        body = err.read()
        err.close()
        return err.code, dict(err.headers), body


def text_of(headers: dict, body: bytes) -> str:
    charset = re.search(r"charset=([\w-]+)", headers.get("Content-Type", ""))
    encoding = charset.group(1).lower() if charset else "utf-8"
    return body.decode("gbk" if encoding in ("gb2312", "gbk") else encoding)


def get_text(site, path: str) -> str:
    status, headers, body = fetch(site.url + path)
    assert status == 200, (path, status)
    return text_of(headers, body)


def test_key_scores_at_least_60_pages_and_every_one_is_served(site, key):
    scored = key.reachable()
    assert len(scored) >= 60
    assert len(set(scored)) == len(scored), "a path is both violating and clean"
    for path in scored + key.navigation:
        status, headers, body = fetch(site.url + path, follow=False)
        assert status == 200, (path, status)
        page = Selector(text=text_of(headers, body))
        assert page.css("title::text").get("").strip(), path
        assert page.css("div.nav a"), path
        assert "版权所有" in "".join(page.css("footer ::text").getall()), path


def test_key_is_derived_from_the_data_files_and_is_consistent(key):
    assert KEY_FILE.read_text(encoding="utf-8") == render_key(derive_answer_key()), "run python -m crawler.demo.keygen"
    groups = [set(key.violations), set(key.clean), set(key.disallowed), set(key.broken), set(key.navigation)]
    for i, first in enumerate(groups):
        for second in groups[i + 1:]:
            assert not first & second
    for path, verdict in key.violations.items():
        assert path.startswith("/") and verdict.categories and set(verdict.categories) <= set(CATEGORIES), path
        assert verdict.note and verdict["categories"] == list(verdict.categories)
    assert all(key.clean_notes[p] for p in key.clean)
    board_bad = [p for p, v in key.violations.items() if p.startswith("/board/") and set(v.categories) - {"minor_training_ad"}]
    board_clean = [p for p in key.clean if p.startswith("/board/ad/")]
    assert len(board_bad) >= 14 and len(board_clean) >= 8
    assert {c for v in key.violations.values() for c in v.categories} == set(CATEGORIES)


def test_listing_pages_chain_with_next_links_and_link_only_known_pages(site, key):
    known = set(key.reachable()) | set(key.disallowed) | set(key.broken)
    linked = []
    for number, path in enumerate(p for p in key.navigation if p.startswith("/board/list/")):
        page = Selector(text=get_text(site, path))
        ads = page.css("a.ad-link::attr(href)").getall()
        assert 8 <= len(ads) <= 12, (path, len(ads))
        linked += ads
        nxt = page.css("a.next::attr(href)").get()
        if number < len([p for p in key.navigation if p.startswith("/board/list/")]) - 1:
            assert nxt == f"/board/list/{number + 2}.html" and page.css("a.next::text").get() == "下一页"
        else:
            assert nxt is None
    assert set(linked) <= known
    assert set(key.disallowed) | {"/board/ad/err-500.html", "/board/ad/loop-a.html"} <= set(linked)
    assert [p for p in linked if p in key.broken and fetch(site.url + p, follow=False)[0] == 404]


def test_ad_detail_pages_have_the_fields_the_selectors_expect(site, key):
    ads = [p for p in key.reachable() if p.startswith("/board/ad/")]
    with_images = 0
    for path in ads:
        page = Selector(text=get_text(site, path))
        assert page.css("h1.ad-title::text").get("").strip(), path
        assert "".join(page.css("div.ad-body ::text").getall()).strip(), path
        assert re.search(r"20\d\d-\d\d-\d\d", " ".join(page.css(".date::text").getall())), path
        if path in key.violations:
            assert page.css("span.contact::text").get(), path
            assert page.css("span.price::text").get(), path
        with_images += bool(page.css("img"))
    assert with_images >= 4
    image = Selector(text=get_text(site, "/board/ad/101.html")).css("img::attr(src)").get()
    status, headers, body = fetch(site.url + image)
    assert status == 200 and headers["Content-Type"] == "image/png" and body.startswith(b"\x89PNG")


def test_gbk_pages_declare_gb2312_but_need_gbk(site, key):
    gbk_pages = []
    for path in key.reachable():
        status, headers, body = fetch(site.url + path)
        if "gb2312" in headers["Content-Type"]:
            gbk_pages.append(path)
            assert b'<meta charset="gb2312">' in body, path
            text = body.decode("gbk")
            with pytest.raises(UnicodeDecodeError):
                body.decode("gb2312")
            assert any(_gbk_only(ch) for ch in text), path
            with pytest.raises(UnicodeDecodeError):
                body.decode("utf-8")
    assert len(gbk_pages) >= 4
    assert any(p in key.violations for p in gbk_pages)


def _gbk_only(ch: str) -> bool:
    try:
        ch.encode("gb2312")
    except UnicodeEncodeError:
        ch.encode("gbk")
        return "\u4e00" <= ch <= "\u9fff"
    return False


def test_robots_txt_blocks_only_the_private_board(site, key):
    status, headers, body = fetch(site.url + "/robots.txt")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert body.decode().splitlines() == ["User-agent: *", "Disallow: /board/private/"]
    robots = RobotFileParser()
    robots.parse(body.decode().splitlines())
    assert key.disallowed
    for path in key.disallowed:
        assert not robots.can_fetch("xunjian", site.url + path), path
    for path in key.reachable():
        assert robots.can_fetch("xunjian", site.url + path), path


def test_broken_pages_500_404_and_redirect_loop(site, key):
    assert fetch(site.url + "/board/ad/err-500.html")[0] == 500
    status, _, body = fetch(site.url + "/board/ad/gone-404.html")
    assert status == 404 and "页面不存在" in body.decode()
    assert fetch(site.url + "/no/such/page.html")[0] == 404
    status, headers, _ = fetch(site.url + "/board/ad/loop-a.html", follow=False)
    assert status == 302 and headers["Location"] == "/board/ad/loop-b.html"
    status, headers, _ = fetch(site.url + "/board/ad/loop-b.html", follow=False)
    assert status == 302 and headers["Location"] == "/board/ad/loop-a.html"
    assert fetch(site.url + "/board/ad/loop-a.html")[0] == 302  # urllib gives up on the loop
    assert {"/board/ad/err-500.html", "/board/ad/gone-404.html", "/board/ad/loop-a.html"} <= set(key.broken)
    news_links = Selector(text=get_text(site, "/news/index.html")).css("a::attr(href)").getall()
    for path in ("/board/ad/err-500.html", "/board/ad/gone-404.html", "/board/ad/loop-a.html"):
        assert news_links.count(path) == 1, path


def test_calendar_trap_links_onward_forever(site, key):
    start = Selector(text=get_text(site, "/news/index.html")).css(f'a[href^="{key.trap_prefix}"]::attr(href)').get()
    assert start
    seen = [start]
    path = start
    for _ in range(3):
        page = Selector(text=get_text(site, path))
        assert not page.css("a.ad-link, .contact, .price")
        assert page.css("a.prev-month::attr(href)").get().startswith(key.trap_prefix)
        path = page.css("a.next-month::attr(href)").get()
        assert path.startswith(key.trap_prefix) and path not in seen
        seen.append(path)
    assert get_text(site, "/news/calendar/1999-12.html")
    assert fetch(site.url + "/news/calendar/2026-13.html")[0] == 404
    assert Selector(text=get_text(site, "/news/calendar/2026-12.html")).css("a.next-month::attr(href)").get() == \
        "/news/calendar/2027-01.html"


def test_platform_course_list_exists_only_after_javascript(site, key):
    rendered = [p for p, v in key.violations.items() if v.render]
    assert rendered == ["/platform/index.html"]
    html = get_text(site, "/platform/index.html")
    assert '<ul id="course-list"></ul>' in html
    for word in ("初三", "物理", "直播课", "报名", "原价", "现价", "13800001111"):
        assert word not in html, word


@pytest.mark.skipif(not shutil.which("chromium"), reason="chromium not installed")
def test_platform_course_list_appears_in_a_browser(site):
    out = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", site.url + "/platform/index.html"],
        capture_output=True, text=True, timeout=120,
    )
    items = Selector(text=out.stdout).css("#course-list li")
    assert items, out.stderr[-2000:]
    rendered = " ".join("".join(li.css("::text").getall()) for li in items)
    assert "初三物理直播课" in rendered and "原价" in rendered and "立即报名" in rendered


def test_institutions_share_phone_and_wechat_between_board_and_own_site(site, key):
    with_sites = [inst for inst in key.institutions.values() if any(p.startswith("/inst/") for p in inst.pages)]
    assert len(with_sites) == 2
    for inst in with_sites:
        board = [p for p in inst.pages if p.startswith("/board/")]
        own = [p for p in inst.pages if p.startswith("/inst/")]
        assert board and len(own) == 5, inst.id
        for path in board + own:
            assert inst.phone in get_text(site, path), (inst.id, path)
        assert any(inst.wechat in get_text(site, p) for p in board) and any(inst.wechat in get_text(site, p) for p in own)
        assert any(key.violations[p].institution == inst.name for p in board if p in key.violations)


def test_mingshi_sitemap_lists_its_pages(site, key):
    status, headers, body = fetch(site.url + "/inst/mingshi/sitemap.xml")
    assert status == 200 and "xml" in headers["Content-Type"]
    locs = Selector(text=body.decode(), type="xml").xpath("//*[local-name()='loc']/text()").getall()
    assert len(locs) == 5
    for loc in locs:
        assert loc.startswith(site.url + "/inst/mingshi/")
        path = urlsplit(loc).path
        assert path in key.violations or path in key.clean, path


def test_conditional_requests_get_304(site):
    status, headers, _ = fetch(site.url + "/news/article/301.html")
    assert status == 200 and headers["ETag"] and headers["Last-Modified"]
    assert fetch(site.url + "/news/article/301.html", {"If-None-Match": headers["ETag"]})[0] == 304
    assert fetch(site.url + "/news/article/301.html", {"If-Modified-Since": headers["Last-Modified"]})[0] == 304
    assert fetch(site.url + "/news/article/301.html", {"If-None-Match": '"other"'})[0] == 200


def test_sources_file_declares_the_five_demo_sources(site):
    assert DEMO_SOURCES == SOURCES_FILE
    raw = tomllib.loads(SOURCES_FILE.read_text(encoding="utf-8"))["source"]
    by_name = {s["name"]: s for s in raw}
    assert list(by_name) == ["board", "huizhi", "mingshi", "platform", "news"]
    assert {n: s["kind"] for n, s in by_name.items()} == {
        "board": "listing", "huizhi": "site", "mingshi": "sitemap", "platform": "site", "news": "site"}
    assert not any("/board/private/" in d for d in by_name["board"].get("deny", []))
    assert by_name["board"]["selectors"]["detail_link"] == "a.ad-link"
    assert by_name["platform"]["render"] is True and by_name["news"]["max_depth"] == 3
    for source in raw:
        for url in source["start_urls"]:
            assert url.startswith("${XUNJIAN_DEMO_URL}/")
            assert fetch(url.replace("${XUNJIAN_DEMO_URL}", site.url))[0] == 200, url
    news_follow = [re.compile(p) for p in by_name["news"]["follow"]]
    for path in ("/board/ad/err-500.html", "/board/ad/gone-404.html", "/board/ad/loop-a.html", "/news/article/301.html"):
        assert any(p.search(site.url + path) for p in news_follow), path


def test_every_link_on_scored_pages_resolves(site, key):
    expected_bad = set(key.broken)
    for path in key.reachable() + key.navigation:
        page = Selector(text=get_text(site, path))
        for href in page.css("a::attr(href), img::attr(src), link::attr(href)").getall():
            if href.startswith("#"):
                continue
            target = urlsplit(urljoin(site.url + path, href)).path
            if target in expected_bad or target in key.disallowed:
                continue
            assert fetch(site.url + target, follow=False)[0] == 200, (path, href)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_server_prints_one_url_line_and_exits_0_on_signal(tmp_path, signum):
    proc = subprocess.Popen([sys.executable, "-m", "crawler.demo.server", "--port", "0"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert re.fullmatch(r"XUNJIAN_DEMO_URL=http://127\.0\.0\.1:\d+\n", line), line
        url = line.split("=", 1)[1].strip()
        assert fetch(url + "/robots.txt")[0] == 200
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert out == "" and err == ""


def test_helper_stop_returns_0_and_access_log_records_requests(tmp_path):
    log = tmp_path / "access.log"
    server = start_demo_server(access_log=log)
    assert not server.url.endswith("/")
    fetch(server.url + "/board/list/1.html")
    fetch(server.url + "/missing.html")
    assert server.stop() == 0
    assert log.read_text(encoding="utf-8").splitlines() == ["GET /board/list/1.html 200", "GET /missing.html 404"]


def test_helper_reports_startup_failure_with_child_stderr():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RuntimeError) as exc:
            start_demo_server(port=port)
    assert "演示站点启动失败" in str(exc.value) and "无法监听" in str(exc.value)


def test_package_data_found_from_any_directory(tmp_path):
    code = "from crawler.demo import load_answer_key; print(len(load_answer_key().violations))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(load_answer_key().violations)
