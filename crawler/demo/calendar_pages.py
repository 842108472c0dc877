"""The 活动日历 crawler trap: /news/calendar/YYYY-MM.html exists for every month of years 1000-9999.

Each page links to the previous and the next month, so a crawler without a depth or page limit never
stops.  Pages list harmless community events and no ads.
"""

from __future__ import annotations

import calendar
import hashlib
import re

from crawler.demo.pages import Page, Site, make_page

TRAP_PREFIX = "/news/calendar/"
_PATH_RE = re.compile(r"^/news/calendar/(\d{4})-(\d{2})\.html$")
_EVENTS = (
    "江北区图书馆绘本故事会",
    "滨江公园菊花展",
    "社区卫生服务中心义诊",
    "市民健步走活动",
    "非遗剪纸作品展",
    "垃圾分类宣传日",
    "社区露天电影放映",
    "老年人智能手机使用讲座",
    "滨江湿地观鸟活动",
    "社区跳蚤市场",
)
MIN_YEAR, MAX_YEAR = 1000, 9999


def month_path(year: int, month: int) -> str | None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        return None
    return f"{TRAP_PREFIX}{year:04d}-{month:02d}.html"


def _shift(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def _event(year: int, month: int, day: int) -> str | None:
    digest = hashlib.sha256(f"{year}-{month}-{day}".encode()).digest()
    if digest[0] % 4:
        return None
    return _EVENTS[digest[1] % len(_EVENTS)]


def calendar_page(site: Site, path: str) -> Page | None:
    """The calendar page for ``path``, or None when the path is not a valid calendar month."""
    match = _PATH_RE.match(path)
    if not match:
        return None
    year, month = int(match.group(1)), int(match.group(2))
    if not (MIN_YEAR <= year <= MAX_YEAR and 1 <= month <= 12):
        return None
    weeks = [
        [{"number": day, "event": _event(year, month, day)} if day else None for day in week]
        for week in calendar.Calendar(firstweekday=0).monthdayscalendar(year, month)
    ]
    text = site.env.get_template("calendar.html.j2").render(
        charset="utf-8",
        site=site.portal,
        title=f"活动日历 {year}年{month}月 - {site.portal['name']}",
        year=year,
        month=month,
        weeks=weeks,
        prev_path=month_path(*_shift(year, month, -1)),
        next_path=month_path(*_shift(year, month, 1)),
    )
    return make_page(text.encode("utf-8"))
