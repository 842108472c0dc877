"""ExtractPipeline: decoded HTML → title, clean text, selector fields and image URLs (lxml, no BeautifulSoup).

The text keeps block boundaries as line breaks and drops scripts, styles and site chrome (navigation,
headers, footers), so detection sees what the page says rather than what every page of the site says.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from urllib.parse import urljoin

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
    """Site chrome marked by role or by class/id (the tags in DROP_TAGS are stripped by name)."""
    if el.get("role") == "navigation":
        return True
    ident = f"{el.get('class', '')} {el.get('id', '')}"
    return bool(ident.strip()) and bool(CHROME_RE.search(ident))


_MARKED = etree.XPath(".//*[@class or @id or @role]")
# libxml2's HTML parser with plain elements: lxml.html's HtmlElement classes are looked up in Python
# for every element touched, which costs more than the extraction itself.
_PARSER = etree.HTMLParser()


def _drop(node) -> None:
    """Remove ``node`` and its subtree, keeping its tail text where it was."""
    parent = node.getparent()
    if parent is None:
        return
    if node.tail:
        previous = node.getprevious()
        if previous is None:
            parent.text = (parent.text or "") + node.tail
        else:
            previous.tail = (previous.tail or "") + node.tail
    parent.remove(node)


def _text_of(el, *, in_place: bool = False) -> str:
    """The visible text under ``el``: chrome dropped, one line per block element.

    All the per-node work runs inside libxml2: the chrome is cut out of the tree (a copy, unless
    ``in_place``), each block element gets a line break before its text and after its end, and the
    tree is serialised as text. Comments and processing instructions contribute their tails only.
    """
    if not in_place:
        el = copy.deepcopy(el)
    etree.strip_elements(el, *DROP_TAGS, with_tail=False)  # never removes ``el`` itself
    for node in _MARKED(el):
        if _is_chrome(node):
            _drop(node)
    for node in el.iter(*BLOCK_TAGS):
        if node is not el:
            node.text = "\n" + (node.text or "")
            node.tail = "\n" + (node.tail or "")
    text = etree.tostring(el, method="text", encoding="unicode", with_tail=False)
    text = _SPACE_RE.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _LINES_RE.sub("\n", text).strip()


@dataclass
class Extracted:
    title: str = ""
    text: str = ""
    fields: dict[str, list[str]] = field(default_factory=dict)
    image_urls: list[str] = field(default_factory=list)


def _parse(html: str):
    if not html.strip():
        return None
    try:
        doc = etree.fromstring(html, _PARSER)
    except (etree.ParserError, ValueError):
        return None
    return doc


def _node_text(node) -> str:
    if isinstance(node.root, str):  # an attribute or text() result
        return " ".join(node.root.split())
    return _text_of(node.root)


def _fields(doc, selectors: dict[str, str]) -> dict[str, list[str]]:
    sel = Selector(root=doc, type="html")
    fields: dict[str, list[str]] = {}
    for key, query in selectors.items():
        if key in ("next_page", "detail_link"):
            continue
        fields[key] = [v for v in (_node_text(node) for node in selector_query(sel, query)) if v]
    return fields


def _images(doc, base_url: str) -> list[str]:
    urls = [urljoin(base_url, src.strip()) for src in doc.xpath("//img/@src") if src.strip()]
    return list(dict.fromkeys(u for u in urls if not u.startswith("data:")))


def extract(html: str, selectors: dict[str, str] | None = None, base_url: str = "") -> Extracted:
    """Title, clean text, selector fields and image URLs of a document, from one parse."""
    doc = _parse(html)
    if doc is None:
        return Extracted(fields={k: [] for k in (selectors or {}) if k not in ("next_page", "detail_link")})
    result = Extracted(title=" ".join((doc.findtext(".//title") or "").split()))
    if selectors:
        result.fields = _fields(doc, selectors)
    result.image_urls = _images(doc, base_url)
    body = doc.find("body")
    result.text = _text_of(body if body is not None else doc, in_place=True)  # last: it edits the tree
    return result


def clean_text(html: str) -> tuple[str, str]:
    """Return (title, text) of an HTML document."""
    result = extract(html)
    return result.title, result.text


def selector_fields(html: str, selectors: dict[str, str]) -> dict[str, list[str]]:
    return extract(html, selectors).fields if selectors else {}


def image_urls(html: str, base_url: str) -> list[str]:
    return extract(html, None, base_url).image_urls


class ExtractPipeline:
    def __init__(self, crawler):
        self.stats = crawler.stats

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_item(self, item: PageItem, spider=None) -> PageItem:
        extracted = extract(item.html, item.selectors, item.url)
        title, text, fields = extracted.title, extracted.text, extracted.fields
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
        item.image_urls = extracted.image_urls
        self.stats.inc_value("xunjian/extracted")
        return item
