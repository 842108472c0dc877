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


def test_chrome_is_a_whole_class_or_id_token_in_any_case():
    html = ("<body><div class='Main_NAV'>导航甲</div><div id='page-Footer'>页脚乙</div>"
            "<div class='top\u3000menu'>菜单丙</div><div role='navigation'>导航丁</div>"
            "<div class='navx'>正文一</div><div class='mainmenu'>正文二</div><div id='headers'>正文三</div>"
            "<div class='ad'>正文四<span class='sidebar'>侧栏戊</span>尾</div></body>")
    _, text = clean_text(html)
    assert text.split("\n") == ["正文一", "正文二", "正文三", "正文四尾"]


def test_the_page_element_itself_is_never_chrome():
    # A body whose class reads like chrome (a fixed header) still has its text; so does a field node.
    html = "<html><body class='page-header-fixed'><p>暑假数学班</p><nav>导航</nav>招生中</body></html>"
    assert clean_text(html)[1] == "暑假数学班\n招生中"
    fields = selector_fields("<body><header class='ad-header'><b>保过</b>冲刺班</header></body>", {"title": "header"})
    assert fields["title"] == ["保过冲刺班"]


def test_control_characters_and_nul_bytes_do_not_lose_the_page():
    # Dropping chrome used to rebuild tail text in the tree, which lxml refuses for control characters;
    # a NUL byte made the parser give up on the whole page.
    _, text = clean_text("<body><div class='nav'>导航</div>\x0b初二\x0c数学\x00辅导</body>")
    assert text == "初二 数学辅导"


def test_fields_keep_document_order_after_text_of_earlier_fields():
    # libxslt numbers the elements of the tree it transforms to sort node sets; a field's text taken
    # from its node in place would leave stale numbers behind and reorder the next field's matches.
    html = ("<body><span>电话一</span><div class='ad'><p>甲</p><span>电话二</span></div>"
            "<span>电话三</span><div class='ad'><span>电话四</span></div></body>")
    fields = selector_fields(html, {"body": "div.ad", "contact": "xpath://div/span | //body/span"})
    assert fields["body"] == ["甲\n电话二", "电话四"]
    assert fields["contact"] == ["电话一", "电话二", "电话三", "电话四"]


def test_pipeline_reads_the_responses_own_parse_once():
    from scrapy.http import HtmlResponse, Request
    from scrapy.utils.test import get_crawler

    from crawler.items import PageItem
    from crawler.pipelines.extract import ExtractPipeline, extract

    url = "http://127.0.0.1:8000/board/ad/1.html"
    response = HtmlResponse(url, body=PAGE.encode("utf-8"), encoding="utf-8", request=Request(url))
    root = response.selector.root
    item = PageItem(source="s", url=url, requested_url=url, fetched_at=None, status=200, headers={},
                    encoding="utf-8", content_hash="", html="", doc=root)
    ExtractPipeline(get_crawler()).process_item(item)
    expected = extract(PAGE, None, url)
    assert (item.title, item.text, item.image_urls) == (expected.title, expected.text, expected.image_urls)
    assert item.text and item.doc is None  # read from the tree (html was empty), then let go
    # The tree is unchanged: the spider still finds every link in it afterwards.
    assert response.css("header a::attr(href)").get() == "/"
    assert response.selector.root is root
