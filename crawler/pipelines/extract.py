"""ExtractPipeline: decoded HTML → title, clean text, selector fields and image URLs (lxml, no BeautifulSoup).

The text keeps block boundaries as line breaks and drops scripts, styles and site chrome (navigation,
headers, footers), so detection sees what the page says rather than what every page of the site says.
The page is parsed once, by Scrapy (the spider hands its response's selector root along with the item),
and the text is serialised by one XSLT pass inside libxslt; the tree is never changed.

libxml2 stops parsing at 2,048 levels of nesting and drops the rest of the document, so an ad wrapped in
thousands of elements would vanish from the text. A document whose last branch reaches MAX_DEPTH is parsed
again with everything below that depth unwrapped (see ``_Unwrapper``): its text is kept whatever the
nesting, in document order.
"""

from __future__ import annotations

import copy
import html as html_lib
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
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
             "track", "wbr"}
# Nesting kept as it is; deeper elements are unwrapped. Far beyond real pages, well within libxml2's limit.
MAX_DEPTH = 200
_SPACE_RE = re.compile(r"[ \t\r\f\v\u3000\xa0]+")

# Chrome keywords as whole tokens of "class id" (tokens split by whitespace, "_" or "-"; any case).
CHROME_WORDS = ("nav", "navbar", "menu", "footer", "header", "breadcrumb", "breadcrumbs", "sidebar", "copyright")
# What Python's case-insensitive, Unicode-aware regex treats as the same letters and as separators:
# ASCII capitals, the dotted/dotless i, the long s and the Kelvin sign fold; \s, "_" and "-" separate
# (less the control characters an XSLT stylesheet cannot name, form feed among them: an ident spaced with
# those is one token here).
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ\u0130\u0131\u017f\u212a"
_LOWER = "abcdefghijklmnopqrstuvwxyziisk"
_SEPARATORS = "".join(ch for ch in map(chr, range(0x3001)) if ch.isspace() and (ch >= " " or ch in "\t\n\r")) + "_-"


def _xpath_string(value: str) -> str:
    """An XPath 1.0 string literal for ``value`` (no quote character appears in the values used here)."""
    return "&quot;" + "".join(ch if ch not in "&<>\"" else f"&#{ord(ch)};" for ch in value) + "&quot;"


def _stylesheet(start: str) -> etree.XSLT:
    """The text serialisation as one XSLT pass, so no element becomes a Python object.

    ``start`` selects, from the document root, the element whose content is serialised: that element is
    never dropped itself and gets no line breaks of its own. Below it, DROP_TAGS and site chrome
    (role="navigation", or a CHROME_WORDS token in class or id) are left out with their content but not
    their tail text; every BLOCK_TAGS element contributes a line break before and after its content;
    comments and processing instructions contribute nothing.
    """
    tokens = (f"concat(' ', translate(concat(@class, ' ', @id), {_xpath_string(_UPPER + _SEPARATORS)}, "
              f"{_xpath_string(_LOWER + ' ' * len(_SEPARATORS))}), ' ')")
    chrome = " or ".join(f"contains($tokens, ' {word} ')" for word in CHROME_WORDS)
    block = " or ".join(f"self::{tag}" for tag in sorted(BLOCK_TAGS))
    newline = "<xsl:text>&#10;</xsl:text>"
    # Priorities: dropped tags, then the chrome test (which computes the tokens once per element and
    # is the only predicate evaluated for every element), then plain block elements.
    return etree.XSLT(etree.XML(f"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="text" encoding="UTF-8"/>
<xsl:template match="/"><xsl:apply-templates select="({start})[1]/node()"/></xsl:template>
<xsl:template match="{'|'.join(sorted(DROP_TAGS))}" priority="4"/>
<xsl:template match="*[@class or @id or @role]" priority="2">
  <xsl:variable name="tokens" select="{tokens}"/>
  <xsl:if test="not(@role='navigation' or {chrome})"><xsl:choose>
    <xsl:when test="{block}">{newline}<xsl:apply-templates/>{newline}</xsl:when>
    <xsl:otherwise><xsl:apply-templates/></xsl:otherwise>
  </xsl:choose></xsl:if>
</xsl:template>
<xsl:template match="{'|'.join(sorted(BLOCK_TAGS))}">{newline}<xsl:apply-templates/>{newline}</xsl:template>
<xsl:template match="comment()|processing-instruction()"/>
</xsl:stylesheet>"""))


# A page's text is its body's (or, with no body, its root's); a field's is its node's. libxslt numbers
# the elements of the document it transforms for XPath's document order, so a transform always gets a
# whole document: the page's own, or a copy of the field's node.
_PAGE_TEXT = _stylesheet("/*/body | /*[not(body)]")
_NODE_TEXT = _stylesheet("/*")
_SPACE_CHARS = ("  ", "\t", "\r", "\f", "\v", "\u3000", "\xa0")


def _tidy(text: str) -> str:
    """Runs of spaces become one, lines are stripped, blank lines dropped."""
    if any(ch in text for ch in _SPACE_CHARS):  # a scan per character beats the regex on clean text
        text = _SPACE_RE.sub(" ", text)
    return "\n".join([line for line in map(str.strip, text.split("\n")) if line])


def page_text(doc) -> str:
    """The visible text of a parsed page: chrome dropped, one line per block element (the tree is unchanged)."""
    return _tidy(str(_PAGE_TEXT(doc.getroottree())))


def _text_of(el) -> str:
    return _tidy(str(_NODE_TEXT(copy.deepcopy(el))))


@dataclass
class Extracted:
    title: str = ""
    text: str = ""
    fields: dict[str, list[str]] = field(default_factory=dict)
    image_urls: list[str] = field(default_factory=list)
    unwrapped: bool = False  # nested too deep for one parse: read from the unwrapped document


def _parse(html: str):
    """The document's root as Scrapy's selectors parse it (parsel: lxml's HTML parser on the stripped,
    NUL-free text), so a response's own ``selector.root`` gives the same result as its text."""
    if not html.strip():
        return None
    return Selector(text=html, type="html").root


def _too_deep(doc) -> bool:
    """Whether the last branch of the tree reaches MAX_DEPTH: where libxml2 stops at its depth limit, the
    element it was in is the deepest of the last branch. O(depth), not O(size)."""
    depth = 0
    while len(doc) and depth < MAX_DEPTH:
        doc = doc[-1]
        depth += 1
    return depth >= MAX_DEPTH


class _Unwrapper:
    """lxml parser target writing the document back as HTML with every element below MAX_DEPTH unwrapped.

    libxml2's SAX events have no depth limit. Down to MAX_DEPTH each element is written as it was parsed;
    below it only the text (escaped) and void elements (images, line breaks) are, a block element's tags
    become line breaks, and a DROP_TAGS element is left out with its content, as extraction would.
    """

    def __init__(self) -> None:
        self.out: list[str] = []
        self.depth = 0
        self.dropping_at = 0  # depth of the dropped element being skipped, 0 when none

    def start(self, tag: str, attrib) -> None:
        self.depth += 1
        if self.dropping_at:
            return
        if self.depth <= MAX_DEPTH or tag in VOID_TAGS:  # an image or a <br> nests nothing
            attributes = "".join(f' {name}="{html_lib.escape(value)}"' for name, value in attrib.items())
            self.out.append(f"<{tag}{attributes}>")
        elif tag in DROP_TAGS:
            self.dropping_at = self.depth
        elif tag in BLOCK_TAGS:
            self._line_break()

    def end(self, tag: str) -> None:
        if self.dropping_at == self.depth:
            self.dropping_at = 0
        elif not self.dropping_at and tag not in VOID_TAGS:
            if self.depth <= MAX_DEPTH:
                self.out.append(f"</{tag}>")
            elif tag in BLOCK_TAGS:
                self._line_break()
        self.depth -= 1

    def _line_break(self) -> None:
        if not self.out or self.out[-1] != "<br>":  # one is as good as a thousand
            self.out.append("<br>")

    def data(self, text: str) -> None:
        if not self.dropping_at:
            self.out.append(html_lib.escape(text, quote=False))

    def close(self) -> str:
        return "".join(self.out)


def _unwrapped(html: str):
    """``html`` parsed with everything nested below MAX_DEPTH unwrapped (the same text preparation as parsel)."""
    parser = etree.HTMLParser(target=_Unwrapper(), recover=True, encoding="utf-8")
    return _parse(etree.fromstring(html.strip().replace("\x00", "").encode("utf-8"), parser))


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


_IMAGE_SOURCES = etree.XPath("//img/@src")


def _title(doc) -> str:
    # The first <title> in document order, found lazily: it is in <head>, so the walk stops there
    # instead of visiting every element of the page as an XPath search would.
    found = next(doc.iterdescendants("title"), None)
    return " ".join((found.text or "").split()) if found is not None else ""


def _images(doc, base_url: str) -> list[str]:
    urls = [urljoin(base_url, src.strip()) for src in _IMAGE_SOURCES(doc) if src.strip()]
    return list(dict.fromkeys(u for u in urls if not u.startswith("data:")))


def extract(html: str, selectors: dict[str, str] | None = None, base_url: str = "", doc=None) -> Extracted:
    """Title, clean text, selector fields and image URLs of a document, from one parse: ``doc``, the
    root of ``html`` already parsed as HTML (a response's selector root), or else a parse of ``html``.
    The tree is left as it was."""
    if doc is None:
        doc = _parse(html)
    if doc is None:
        return Extracted(fields={k: [] for k in (selectors or {}) if k not in ("next_page", "detail_link")})
    unwrapped = _too_deep(doc)
    if unwrapped:
        doc = _unwrapped(html)
    result = Extracted(title=_title(doc), unwrapped=unwrapped)
    if selectors:
        result.fields = _fields(doc, selectors)
    result.image_urls = _images(doc, base_url)
    result.text = page_text(doc)
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
        extracted = extract(item.html, item.selectors, item.url, doc=item.doc)
        item.doc = None
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
        if extracted.unwrapped:
            self.stats.inc_value("xunjian/extract/unwrapped_deep_nesting")
        self.stats.inc_value("xunjian/extracted")
        return item
