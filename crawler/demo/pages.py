"""Renders the demo site's fixed pages from its data files and Jinja2 templates, in memory.

``build_site(base_url)`` returns a ``Site``: a path -> ``Page`` table plus the rendered error pages.
Dynamic pages (the calendar trap) live in ``calendar_pages``; request routing lives in ``server``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from email.utils import format_datetime

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from crawler.demo.content import SITE_DIR, Ad, SiteData, StaticPage, load_site_data
from crawler.demo.images import placeholder_png

HTML_UTF8 = "text/html; charset=utf-8"
HTML_GB2312 = "text/html; charset=gb2312"
_IMG_RE = re.compile(r'/static/img/([\w.-]+\.png)')


@dataclass(frozen=True)
class Page:
    body: bytes
    content_type: str = HTML_UTF8
    status: int = 200
    last_modified: str | None = None  # RFC 7231 date
    etag: str | None = None


@dataclass
class Site:
    base_url: str
    pages: dict[str, Page] = field(default_factory=dict)
    not_found: Page | None = None
    server_error: Page | None = None
    env: Environment | None = None
    portal: dict = field(default_factory=dict)


def make_env() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(SITE_DIR / "templates")),
        autoescape=select_autoescape(enabled_extensions=("html.j2", "xml.j2"), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def http_date(day: str) -> str:
    """'2026-11-20' -> 'Fri, 20 Nov 2026 00:00:00 GMT'."""
    moment = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=timezone.utc)
    return format_datetime(moment, usegmt=True)


def make_page(body: bytes, content_type: str = HTML_UTF8, status: int = 200, published: str | None = None) -> Page:
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return Page(body=body, content_type=content_type, status=status,
                last_modified=http_date(published) if published else None, etag=etag)


def paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.strip().split("\n\n") if p.strip()]


def portal_context(data: SiteData) -> dict:
    return {
        "name": data.portal["name"],
        "home": "/",
        "nav": [("首页", "/"), ("分类信息", "/board/list/1.html"), ("本地资讯", "/news/index.html"),
                ("关于本站", "/about.html")],
        "footer": data.portal["footer"],
    }


def _html(env: Environment, template: str, published: str | None, *, encoding: str = "utf-8", **ctx) -> Page:
    charset = "gb2312" if encoding == "gbk" else "utf-8"
    text = env.get_template(template).render(charset=charset, **ctx)
    if encoding == "gbk":
        return make_page(text.encode("gbk"), HTML_GB2312, published=published)
    return make_page(text.encode("utf-8"), HTML_UTF8, published=published)


def listing_items(data: SiteData) -> list[list[dict]]:
    """Ads per listing page, newest first; pinned extras (``listed_on``) go mid-page."""
    size = int(data.portal.get("board_page_size", 9))
    regular = sorted((ad for ad in data.ads if ad.listed_on is None), key=lambda a: (a.published, a.id), reverse=True)
    pages = [[_item(ad) for ad in regular[i:i + size]] for i in range(0, len(regular), size)]
    extras = [(ad.listed_on, _item(ad)) for ad in data.ads if ad.listed_on is not None]
    extras += [(b.listed_on, {"path": b.path, "title": b.title, "section": "生活服务", "published": None})
               for b in data.broken if b.listed_on is not None]
    for number, item in extras:
        if not 1 <= number <= len(pages):
            raise ValueError(f"演示站点数据 listed_on={number} 超出分类列表页数 {len(pages)}（{item['path']}）")
        target = pages[number - 1]
        target.insert(len(target) // 2, item)
    return pages


def _item(ad: Ad) -> dict:
    return {"path": ad.path, "title": ad.title, "section": ad.section, "published": ad.published}


def _build_board(site: Site, data: SiteData, portal: dict) -> None:
    listing = listing_items(data)
    for number, items in enumerate(listing, start=1):
        site.pages[f"/board/list/{number}.html"] = _html(
            site.env, "board_list.html.j2", None, site=portal, items=items, number=number, total=len(listing),
            title=f"分类信息 第{number}页 - {portal['name']}")
    for ad in data.ads:
        site.pages[ad.path] = _html(
            site.env, "board_ad.html.j2", ad.published, encoding=ad.encoding, site=portal, ad=ad,
            paragraphs=paragraphs(ad.body), title=f"{ad.title} - {portal['name']}")


def _static_pages(site: Site, pages: tuple[StaticPage, ...], ctx: dict) -> None:
    for page in pages:
        if page.html:
            site.pages[page.path] = _html(site.env, "page.html.j2", page.published, site=ctx, html=page.html,
                                          title=page.title)


def _build_institutions(site: Site, data: SiteData) -> None:
    for inst in data.institutions.values():
        if not inst.pages:
            continue
        ctx = {
            "name": inst.brand,
            "home": f"/inst/{inst.id}/index.html",
            "nav": [(p.nav, p.path) for p in inst.pages],
            "footer": f"{inst.name} 版权所有　地址：{inst.address}　电话：{inst.phone}",
        }
        _static_pages(site, inst.pages, ctx)
        if inst.sitemap:
            xml = site.env.get_template("sitemap.xml.j2").render(base=site.base_url, entries=inst.pages)
            site.pages[f"/inst/{inst.id}/sitemap.xml"] = make_page(xml.encode("utf-8"), "application/xml; charset=utf-8")


def _build_platform(site: Site, data: SiteData) -> None:
    plat = data.platform
    owner = data.institutions[plat.institution]
    ctx = {
        "name": plat.name,
        "home": "/platform/index.html",
        "nav": [(p.nav, p.path) for p in plat.pages],
        "footer": f"{plat.name} 由{owner.name}运营 版权所有",
    }
    _static_pages(site, plat.pages, ctx)
    payload = json.dumps({"courses": list(plat.courses), "signup": plat.signup}, ensure_ascii=False)
    packed = base64.b64encode(payload.encode("utf-8")).decode("ascii")
    index = next(p for p in plat.pages if p.path.endswith("/index.html"))
    site.pages[index.path] = _html(site.env, "platform_index.html.j2", index.published, site=ctx, packed=packed,
                                   title=index.title)


def _build_news(site: Site, data: SiteData, portal: dict) -> None:
    for art in data.articles:
        site.pages[art.path] = _html(site.env, "news_article.html.j2", art.published, site=portal, art=art,
                                     paragraphs=paragraphs(art.body), title=f"{art.title} - {portal['name']}")
    labels = {500: "周末亲子活动报名（旧链接）", 404: "二手市场专题（已下线）", 302: "招聘专区"}
    broken_links = [{"path": b.path, "label": labels[b.status]} for b in data.broken if b.listed_on is not None]
    newest = sorted(data.articles, key=lambda a: (a.published, a.id), reverse=True)
    site.pages["/news/index.html"] = _html(
        site.env, "news_index.html.j2", newest[0].published, site=portal, articles=newest,
        calendar_path=f"/news/calendar/{data.portal['calendar_start']}.html", broken_links=broken_links,
        title=f"本地资讯 - {portal['name']}")


def _build_images(site: Site, data: SiteData) -> None:
    names = {img["file"] for ad in data.ads for img in ad.images}
    statics = [p for inst in data.institutions.values() for p in inst.pages] + list(data.platform.pages)
    for page in statics + list(data.pages):
        names.update(_IMG_RE.findall(page.html))
    for name in names:
        site.pages[f"/static/img/{name}"] = make_page(placeholder_png(name), "image/png")
    css = (SITE_DIR / "static" / "site.css").read_bytes()
    site.pages["/static/site.css"] = make_page(css, "text/css; charset=utf-8")


def build_site(base_url: str) -> Site:
    """Render every fixed page; ``base_url`` (no trailing slash) is used for absolute URLs in sitemaps."""
    data = load_site_data()
    site = Site(base_url=base_url.rstrip("/"), env=make_env())
    portal = portal_context(data)
    site.portal = portal
    _build_board(site, data, portal)
    _build_institutions(site, data)
    _build_platform(site, data)
    _build_news(site, data, portal)
    _static_pages(site, data.pages, portal)
    _build_images(site, data)
    robots = site.env.get_template("robots.txt.j2").render()
    site.pages["/robots.txt"] = make_page(robots.encode("utf-8"), "text/plain; charset=utf-8")
    for status, heading, message in ((404, "404 页面不存在", "您访问的页面不存在或已被删除。"),
                                     (500, "500 服务器内部错误", "服务器开小差了，请稍后再试。")):
        page = _html(site.env, "error.html.j2", None, site=portal, heading=heading, message=message,
                     title=f"{heading} - {portal['name']}")
        page = Page(body=page.body, content_type=page.content_type, status=status)
        if status == 404:
            site.not_found = page
        else:
            site.server_error = page
    return site
