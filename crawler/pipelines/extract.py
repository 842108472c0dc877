"""ExtractPipeline: decoded HTML → title, clean text, selector fields and image URLs (lxml, no BeautifulSoup).

The text keeps block boundaries as line breaks and drops scripts, styles and site chrome (navigation,
headers, footers), so detection sees what the page says rather than what every page of the site says.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

import lxml.html
from lxml import etree
from parsel import Selector

from crawler.items import PageItem
from crawler.sources import selector_query

DROP_TAGS = {"script", "style", "noscript", "template", "svg", "iframe", "nav", "header", "footer", "aside",
             "form", "button", "select", "head"}
BLOCK_TAGS = {"p", "div", "br", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6",
              "section", "article", "blockquote", "pre", "dd", "dt", "dl", "td", "th", "main", "hr",
              "figure", "figcaption", "address", "title", "body"}
CHROME_RE = re.compile(r"(^|[\s_-])(nav|navbar|menu|footer|header|breadcrumbs?|sidebar|copyright|site-nav)($|[\s_-])", re.I)
_SPACE_RE = re.compile(r"[ \t\r\f\v\u3000\xa0]+")
_LINES_RE = re.compile(r"\n\s*\n+")


def _is_chrome(el) -> bool:
    if el.tag in DROP_TAGS:
        return True
    if el.get("role") == "navigation":
        return True
    ident = f"{el.get('class', '')} {el.get('id', '')}"
    return bool(ident.strip()) and bool(CHROME_RE.search(ident))


def _text_of(root) -> str:
    parts: list[str] = []

    def walk(el) -> None:
        for child in el:
            tag = child.tag if isinstance(child.tag, str) else ""
            if not tag:  # comments, processing instructions
                if child.tail:
                    parts.append(child.tail)
                continue
            if _is_chrome(child):
                if child.tail:
                    parts.append(child.tail)
                continue
            block = tag in BLOCK_TAGS
            if block:
                parts.append("\n")
            if child.text:
                parts.append(child.text)
            walk(child)
            if block:
                parts.append("\n")
            if child.tail:
                parts.append(child.tail)

    if root.text:
        parts.append(root.text)
    walk(root)
    text = _SPACE_RE.sub(" ", "".join(parts))
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _LINES_RE.sub("\n", text).strip()


def clean_text(html: str) -> tuple[str, str]:
    """Return (title, text) of an HTML document."""
    if not html.strip():
        return "", ""
    try:
        doc = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return "", ""
    title = " ".join((doc.findtext(".//title") or "").split())
    body = doc.find("body")
    return title, _text_of(body if body is not None else doc)


def _node_text(node) -> str:
    if isinstance(node.root, str):  # an attribute or text() result
        return " ".join(node.root.split())
    return _text_of(node.root)


def selector_fields(html: str, selectors: dict[str, str]) -> dict[str, list[str]]:
    if not selectors:
        return {}
    sel = Selector(text=html)
    fields: dict[str, list[str]] = {}
    for key, query in selectors.items():
        if key in ("next_page", "detail_link"):
            continue
        values = [v for v in (_node_text(node) for node in selector_query(sel, query)) if v]
        fields[key] = values
    return fields


def image_urls(html: str, base_url: str) -> list[str]:
    sel = Selector(text=html)
    urls = [urljoin(base_url, src.strip()) for src in sel.xpath("//img/@src").getall() if src.strip()]
    return list(dict.fromkeys(u for u in urls if not u.startswith("data:")))


class ExtractPipeline:
    def __init__(self, crawler):
        self.stats = crawler.stats

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_item(self, item: PageItem, spider=None) -> PageItem:
        title, text = clean_text(item.html)
        fields = selector_fields(item.html, item.selectors)
        item.title = (fields.get("title") or [title])[0] if fields.get("title") else title
        if fields.get("body"):
            # A source with a body selector names the part of the page that is the ad itself.
            parts = [item.title, *fields["body"]]
            body = "\n".join(parts)
            parts += [v for v in fields.get("contact", []) + fields.get("price", []) if v not in body]
            item.text = "\n".join(p for p in parts if p)
        else:
            item.text = text
        for key in ("title", "body"):
            if key in item.selectors and not fields.get(key):
                self.stats.inc_value(f"xunjian/selectors/{key}_empty")
        item.fields = fields
        item.image_urls = image_urls(item.html, item.url)
        self.stats.inc_value("xunjian/extracted")
        return item
