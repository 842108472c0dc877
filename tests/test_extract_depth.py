"""Text below any nesting depth is extracted (issue 14, point 6).

libxml2 stops parsing at 2,048 levels of nesting and drops the rest of the page, so an ad wrapped in
50,000 <div>s, and everything after it, used to vanish from the detected text: an evasion. A real crawl
of such a page on 127.0.0.1 must detect the ad and keep the text after the nesting.
"""

from __future__ import annotations

import time

import pytest

from crawler.pipelines.extract import MAX_DEPTH, extract
from tests.conftest import run_cli
from tests.test_evidence import snapshots
from tests.test_screenshot_bytes import Server

DEPTH = 50_000
AD = "初三数学寒假冲刺班，名师一对一辅导，保证提分30分，不提分全额退款！报名电话13912345678"
AFTER = "本班另设周末小班，详情见下方报名表。"


def nested_page(depth: int = DEPTH) -> str:
    deep = f"<p>{AD}</p><script>var hidden = '<p>脚本里的字</p>';</script><img src='/deep.png'>"
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>寒假班</title></head><body><p>开头</p>'
            f"{'<div>' * depth}{deep}{'</div>' * depth}<p>{AFTER}</p><img src='/after.png'></body></html>")


def test_text_nested_50000_deep_and_the_text_after_it_are_extracted(record_property):
    html = nested_page()
    started = time.perf_counter()
    result = extract(html, {"body": "p"}, "http://127.0.0.1/deep.html")
    seconds = time.perf_counter() - started
    record_property("extract_seconds_50000_deep", round(seconds, 3))
    print(f"extraction of a page nested {DEPTH:,} deep: {seconds:.3f} s")  # measured, not asserted
    assert result.unwrapped
    assert result.text.split("\n") == ["开头", AD, AFTER]  # in document order, the script still dropped
    assert result.title == "寒假班"
    assert result.fields["body"] == ["开头", AFTER]  # the deep <p> is unwrapped: its text is in the page text
    assert result.image_urls == ["http://127.0.0.1/deep.png", "http://127.0.0.1/after.png"]


@pytest.mark.parametrize("depth", [MAX_DEPTH - 10, 2_000])
def test_pages_libxml2_parses_whole_are_read_as_they_are(depth):
    result = extract(nested_page(depth), {"body": "p"})
    assert result.unwrapped is False
    assert result.text.split("\n") == ["开头", AD, AFTER]


def test_a_crawl_detects_the_ad_inside_the_nesting(tmp_path):
    body = nested_page().encode("utf-8")

    def answer(path: str, count: int):
        if path == "/deep.html":
            return 200, {"Content-Type": "text/html; charset=utf-8"}, body
        return 404, {"Content-Type": "text/plain"}, b"not found"

    with Server(answer) as site:
        sources = tmp_path / "sources.toml"
        sources.write_text(f'[[source]]\nname = "deep"\nkind = "site"\nstart_urls = ["{site.url}/deep.html"]\n'
                           'allow_private = true\n', encoding="utf-8")
        db = f"sqlite:///{tmp_path / 'x.db'}"
        result = run_cli("crawl", "--sources", str(sources), "--db", db,
                         env={"XUNJIAN_DATA_DIR": str(tmp_path / "data")}, timeout=240)
    assert result.code == 0, result.err[-2000:]
    (snap,) = snapshots(db)["deep.html"]
    assert AD in snap.text and AFTER in snap.text
    assert "banned_ad" in snap.categories
