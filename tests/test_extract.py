"""Extraction: clean text without site chrome, selector fields, image URLs."""

from __future__ import annotations

from crawler.pipelines.extract import clean_text, image_urls, selector_fields

PAGE = """<!doctype html><html><head><title> 暑假初二数学班 - 分类信息 </title>
<style>.x{color:red}</style><script>var banned = "保过班";</script></head>
<body>
<div class="nav">首页 | 分类 | 关于</div>
<header><a href="/">网站头部</a></header>
<div class="main"><h1 class="ad-title">暑假<b>初二</b>数学班</h1>
<div class="ad-body"><p>每班限8人，试听免费。</p><p>地址：滨河路12号</p></div>
<span class="contact">电话：138 0000 1111</span><span class="price">88元/节</span>
<img src="/img/a.jpg"><img src="data:image/png;base64,AAAA"><img src="https://cdn.example/b.png">
<!-- a comment 保过 --></div>
<footer class="site-footer">版权所有 © 2026</footer>
<div id="page-footer">备案号 123</div>
</body></html>"""


def test_clean_text_drops_scripts_styles_and_chrome():
    title, text = clean_text(PAGE)
    assert title == "暑假初二数学班 - 分类信息"
    assert "暑假初二数学班" in text  # inline tags do not split words
    assert "每班限8人，试听免费。\n地址：滨河路12号" in text  # blocks become lines
    for gone in ("保过", "color:red", "首页", "网站头部", "版权所有", "备案号"):
        assert gone not in text


def test_selector_fields_css_and_xpath():
    fields = selector_fields(PAGE, {
        "title": "h1.ad-title",
        "body": "xpath://div[@class='ad-body']",
        "contact": ".contact",
        "price": "xpath://span[@class='price']/text()",
        "detail_link": "a.ad-link",
    })
    assert fields["title"] == ["暑假初二数学班"]
    assert fields["body"] == ["每班限8人，试听免费。\n地址：滨河路12号"]
    assert fields["contact"] == ["电话：138 0000 1111"]
    assert fields["price"] == ["88元/节"]
    assert "detail_link" not in fields


def test_image_urls_are_absolute_and_skip_data_uris():
    assert image_urls(PAGE, "http://127.0.0.1:8000/board/ad/1.html") == [
        "http://127.0.0.1:8000/img/a.jpg",
        "https://cdn.example/b.png",
    ]


def test_empty_and_broken_html():
    assert clean_text("") == ("", "")
    title, text = clean_text("<p>只有一段<b>没有闭合")
    assert title == "" and text == "只有一段没有闭合"
