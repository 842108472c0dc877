"""The sources loader: defaults, environment expansion, and one-line errors naming file, line, source, field."""

from __future__ import annotations

import textwrap

import pytest

from crawler.sources import DEFAULT_MAX_DEPTH, DEFAULT_MAX_PAGES, SourcesError, find_source, load_sources

GOOD = """
[[source]]
name = "board"
kind = "listing"
start_urls = ["${XJ_TEST_BASE}/board/list/1.html"]
follow = ["/board/"]
deny = ["/board/private/"]
max_depth = 12
max_pages = 300
schedule = "30 6 * * *"
delay = 0.5
concurrency = 4
max_minutes = 90
[source.selectors]
title = "h1.ad-title"
body = "xpath://div[@class='ad-body']"
detail_link = "a.ad-link"
next_page = "a.next"

[[source]]
name = "minimal"
kind = "site"
start_urls = ["${XJ_UNSET_VAR:-http://127.0.0.1:9}/"]
"""


def write(tmp_path, text: str):
    path = tmp_path / "sources.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_loads_fields_defaults_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("XJ_TEST_BASE", "http://127.0.0.1:8123")
    monkeypatch.delenv("XJ_UNSET_VAR", raising=False)
    board, minimal = load_sources(write(tmp_path, GOOD))
    assert board.start_urls == ("http://127.0.0.1:8123/board/list/1.html",)
    assert board.allowed_domains == ("127.0.0.1",)
    assert (board.max_depth, board.max_pages, board.delay, board.concurrency) == (12, 300, 0.5, 4)
    assert board.selectors.body == "xpath://div[@class='ad-body']"
    assert board.schedule == "30 6 * * *"
    assert board.max_minutes == 90.0 and board.as_config()["max_minutes"] == 90.0
    assert board.line == 2
    # Only name, kind and start_urls are required: the rest falls back to documented defaults.
    assert minimal.start_urls == ("http://127.0.0.1:9/",)
    assert minimal.max_depth == DEFAULT_MAX_DEPTH["site"]
    assert minimal.max_pages == DEFAULT_MAX_PAGES
    assert minimal.render is False and minimal.follow == ()
    assert minimal.max_minutes is None  # the global CLOSESPIDER_TIMEOUT applies
    assert find_source([board, minimal], "minimal") is minimal


BAD_CASES = [
    # (id, text, fragments the one-line message must contain)
    ("unknown-field", '[[source]]\nname = "a"\nkind = "site"\nstart_urls = ["http://x/"]\nfolow = ["x"]\n',
     [":5:", '来源 "a"', '字段 "folow"', "未知字段"]),
    ("bad-kind", '[[source]]\nname = "a"\nkind = "lisitng"\nstart_urls = ["http://x/"]\n',
     [":3:", '字段 "kind"', "lisitng"]),
    ("missing-start", '[[source]]\nname = "a"\nkind = "site"\n', [":1:", '缺少必填字段 "start_urls"']),
    ("bad-url", '[[source]]\nname = "a"\nkind = "site"\nstart_urls = ["ftp://x/"]\n',
     [":4:", '字段 "start_urls"', "ftp://x/"]),
    ("bad-regex", '[[source]]\nname = "a"\nkind = "site"\nstart_urls = ["http://x/"]\ndeny = ["(unclosed"]\n',
     [":5:", '字段 "deny"', "(unclosed"]),
    ("bad-cron", '[[source]]\nname = "a"\nkind = "site"\nstart_urls = ["http://x/"]\nschedule = "61 * * * *"\n',
     [":5:", '字段 "schedule"', "61 * * * *"]),
    ("bad-depth", '[[source]]\nname = "a"\nkind = "site"\nstart_urls = ["http://x/"]\nmax_depth = -1\n',
     [":5:", '字段 "max_depth"']),
    ("bad-max-minutes", '[[source]]\nname = "a"\nkind = "site"\nstart_urls = ["http://x/"]\nmax_minutes = 0\n',
     [":5:", '字段 "max_minutes"', "分钟"]),
    ("render-not-bool", '[[source]]\nname = "a"\nkind = "site"\nstart_urls = ["http://x/"]\nrender = "yes"\n',
     [":5:", '字段 "render"']),
    ("bad-css", '[[source]]\nname = "a"\nkind = "site"\nstart_urls = ["http://x/"]\n[source.selectors]\ntitle = "h1[["\n',
     ['字段 "selectors.title"', "h1[["]),
    ("hyphen-selector", '[[source]]\nname = "a"\nkind = "site"\nstart_urls = ["http://x/"]\n[source.selectors]\nnext-page = "a"\n',
     ['字段 "selectors.next-page"', "next_page"]),
    ("listing-needs-detail", '[[source]]\nname = "a"\nkind = "listing"\nstart_urls = ["http://x/"]\n',
     ['字段 "selectors"', "detail_link"]),
    ("duplicate-name", '[[source]]\nname = "a"\nkind = "site"\nstart_urls = ["http://x/"]\n'
     '[[source]]\nname = "a"\nkind = "site"\nstart_urls = ["http://y/"]\n', [":5:", "名称重复", "第 1 行"]),
    ("unset-env", '[[source]]\nname = "a"\nkind = "site"\nstart_urls = ["${XJ_NEVER_SET_42}/"]\n',
     ['字段 "start_urls"', "XJ_NEVER_SET_42"]),
    ("bad-name", '[[source]]\nname = "Board One"\nkind = "site"\nstart_urls = ["http://x/"]\n', ['字段 "name"']),
    ("toml-syntax", '[[source]]\nname = "a\n', ["TOML 语法错误", "line 2"]),
    ("no-sources", 'title = "x"\n', ["未知的顶层键"]),
    ("empty", "", ["没有任何 [[source]] 表"]),
]


@pytest.mark.parametrize("case_id,text,fragments", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_files_fail_with_one_line_naming_the_place(tmp_path, monkeypatch, case_id, text, fragments):
    monkeypatch.delenv("XJ_NEVER_SET_42", raising=False)
    path = write(tmp_path, text)
    with pytest.raises(SourcesError) as err:
        load_sources(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message, message


def test_missing_file_and_unknown_source(tmp_path):
    with pytest.raises(SourcesError, match="找不到来源配置文件"):
        load_sources(tmp_path / "nope.toml")
    sources = load_sources(write(tmp_path, '[[source]]\nname = "a"\nkind = "site"\nstart_urls = ["http://x/"]\n'))
    with pytest.raises(SourcesError, match='没有名为 "b" 的来源'):
        find_source(sources, "b")
