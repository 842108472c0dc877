"""Loads the demo site's data files (``crawler/demo/site/*.toml``) into typed, checked records.

The data files are the single source of truth: pages are rendered from them and the answer key is
derived from them (see ``keygen``).  A malformed file raises ``DemoDataError`` naming file and field.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

SITE_DIR = Path(__file__).resolve().parent / "site"
CATEGORIES = ("banned_ad", "exaggerated_marketing", "disguised_tutoring", "minor_training_ad")


class DemoDataError(Exception):
    """A demo data file that cannot be used; ``str()`` names the file and the field."""


@dataclass(frozen=True)
class Verdict:
    """Ground truth for one page: empty ``categories`` means clean."""

    categories: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    institution: str | None = None
    render: bool = False
    disallowed: bool = False
    note: str = ""


@dataclass(frozen=True)
class Ad:
    id: str
    path: str
    section: str
    title: str
    published: str
    district: str
    poster: str
    body: str
    verdict: Verdict
    phone: str | None = None
    wechat: str | None = None
    price: str | None = None
    encoding: str = "utf-8"
    images: tuple[dict, ...] = ()
    listed_on: int | None = None


@dataclass(frozen=True)
class StaticPage:
    path: str
    title: str
    published: str
    html: str
    verdict: Verdict
    nav: str = ""


@dataclass(frozen=True)
class Institution:
    id: str
    name: str
    brand: str
    phone: str
    address: str
    wechat: str | None = None
    sitemap: bool = False
    pages: tuple[StaticPage, ...] = ()


@dataclass(frozen=True)
class Article:
    id: str
    path: str
    title: str
    published: str
    author: str
    origin: str
    body: str
    note: str


@dataclass(frozen=True)
class Broken:
    path: str
    status: int
    title: str | None = None
    listed_on: int | None = None


@dataclass(frozen=True)
class Platform:
    name: str
    institution: str
    courses: tuple[dict, ...]
    signup: str
    pages: tuple[StaticPage, ...]


@dataclass(frozen=True)
class SiteData:
    portal: dict
    ads: tuple[Ad, ...]
    institutions: dict[str, Institution]
    platform: Platform
    articles: tuple[Article, ...]
    broken: tuple[Broken, ...]
    pages: tuple[StaticPage, ...] = field(default=())


def _read(name: str) -> dict:
    path = SITE_DIR / name
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DemoDataError(f"演示站点数据文件 {path} 无法读取：{exc}") from exc


def _need(table: dict, key: str, where: str) -> object:
    if key not in table:
        raise DemoDataError(f"演示站点数据 {where} 缺少字段 {key}")
    return table[key]


def _verdict(raw: dict | None, where: str) -> Verdict:
    raw = raw or {}
    cats = tuple(raw.get("categories", ()))
    for cat in cats:
        if cat not in CATEGORIES:
            raise DemoDataError(f"演示站点数据 {where} 的 verdict.categories 含未知类别 {cat!r}")
    note = _need(raw, "note", f"{where} verdict")
    return Verdict(
        categories=cats,
        families=tuple(raw.get("families", ())),
        institution=raw.get("institution"),
        render=bool(raw.get("render", False)),
        disallowed=bool(raw.get("disallowed", False)),
        note=str(note),
    )


def _static(raw: dict, path: str, where: str, institution: str | None = None) -> StaticPage:
    verdict = _verdict(raw.get("verdict"), where)
    if institution and verdict.institution is None:
        verdict = replace(verdict, institution=institution)
    return StaticPage(
        path=path,
        title=str(_need(raw, "title", where)),
        published=str(_need(raw, "published", where)),
        html=str(raw.get("html", "")),
        verdict=verdict,
        nav=str(raw.get("nav", "")),
    )


def _ads(raw: dict) -> tuple[Ad, ...]:
    ads = []
    for i, item in enumerate(raw.get("ad", ())):
        where = f"board.toml 第 {i + 1} 条 [[ad]]"
        ad_id = str(_need(item, "id", where))
        ads.append(Ad(
            id=ad_id,
            path=item.get("path", f"/board/ad/{ad_id}.html"),
            section=str(_need(item, "section", where)),
            title=str(_need(item, "title", where)),
            published=str(_need(item, "published", where)),
            district=str(_need(item, "district", where)),
            poster=str(_need(item, "poster", where)),
            body=str(_need(item, "body", where)),
            verdict=_verdict(item.get("verdict"), where),
            phone=item.get("phone"),
            wechat=item.get("wechat"),
            price=item.get("price"),
            encoding=item.get("encoding", "utf-8"),
            images=tuple(item.get("images", ())),
            listed_on=item.get("listed_on"),
        ))
    return tuple(ads)


def _institutions(raw: dict) -> dict[str, Institution]:
    result = {}
    for i, item in enumerate(raw.get("institution", ())):
        where = f"institutions.toml 第 {i + 1} 个 [[institution]]"
        inst_id = str(_need(item, "id", where))
        pages = tuple(
            _static(page, f"/inst/{inst_id}/{_need(page, 'file', where)}", f"{where} 页面 {j + 1}", inst_id)
            for j, page in enumerate(item.get("page", ()))
        )
        result[inst_id] = Institution(
            id=inst_id,
            name=str(_need(item, "name", where)),
            brand=str(_need(item, "brand", where)),
            phone=str(_need(item, "phone", where)),
            address=str(_need(item, "address", where)),
            wechat=item.get("wechat"),
            sitemap=bool(item.get("sitemap", False)),
            pages=pages,
        )
    return result


def _platform(raw: dict) -> Platform:
    plat = _need(raw, "platform", "platform.toml")
    owner = str(_need(plat, "institution", "platform.toml [platform]"))
    pages = tuple(
        _static(page, f"/platform/{_need(page, 'file', 'platform.toml')}", f"platform.toml 页面 {j + 1}", owner)
        for j, page in enumerate(plat.get("page", ()))
    )
    return Platform(
        name=str(_need(plat, "name", "platform.toml [platform]")),
        institution=owner,
        courses=tuple(plat.get("course", ())),
        signup=str(_need(_need(plat, "signup", "platform.toml [platform]"), "text", "platform.signup")),
        pages=pages,
    )


def _articles(raw: dict) -> tuple[Article, ...]:
    items = []
    for i, item in enumerate(raw.get("article", ())):
        where = f"news.toml 第 {i + 1} 篇 [[article]]"
        art_id = str(_need(item, "id", where))
        items.append(Article(
            id=art_id,
            path=f"/news/article/{art_id}.html",
            title=str(_need(item, "title", where)),
            published=str(_need(item, "published", where)),
            author=str(_need(item, "author", where)),
            origin=str(_need(item, "origin", where)),
            body=str(_need(item, "body", where)),
            note=str(_need(item, "note", where)),
        ))
    return tuple(items)


@lru_cache(maxsize=1)
def load_site_data() -> SiteData:
    """All demo data, parsed once per process."""
    site = _read("site.toml")
    institutions = _institutions(_read("institutions.toml"))
    ads = _ads(_read("board.toml"))
    platform = _platform(_read("platform.toml"))
    for ad in ads:
        inst = ad.verdict.institution
        if inst is not None and inst not in institutions:
            raise DemoDataError(f"演示站点数据 board.toml 广告 {ad.id} 引用了未知机构 {inst!r}")
    if platform.institution not in institutions:
        raise DemoDataError(f"演示站点数据 platform.toml 引用了未知机构 {platform.institution!r}")
    pages = tuple(
        _static({**p, "verdict": {"note": p.get("note", "")}}, str(_need(p, "path", "site.toml [[page]]")),
                f"site.toml 页面 {j + 1}")
        for j, p in enumerate(site.get("page", ()))
    )
    broken = tuple(
        Broken(path=str(_need(b, "path", "site.toml [[broken]]")), status=int(_need(b, "status", "site.toml [[broken]]")),
               title=b.get("title"), listed_on=b.get("listed_on"))
        for b in site.get("broken", ())
    )
    return SiteData(
        portal=dict(_need(site, "portal", "site.toml")),
        ads=ads,
        institutions=institutions,
        platform=platform,
        articles=_articles(_read("news.toml")),
        broken=broken,
        pages=pages,
    )
