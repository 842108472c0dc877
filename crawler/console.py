"""What an inspector reads on the console: lead lists and crawl summaries, in Simplified Chinese."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table
from rich.text import Text

from detectors.model import CATEGORY_LABELS
from storage.workflow import STATUS_NAMES

# One vocabulary everywhere: the detector's category labels and the workflow's status names.
CATEGORY_NAMES = CATEGORY_LABELS
SEVERITY_STYLES = {5: "bold red", 4: "red", 3: "yellow", 2: "cyan", 1: "dim"}
LOCAL_TZ = ZoneInfo("Asia/Shanghai")

# Characters a page could use to drive the terminal, each shown as ONE visible character so offsets into
# the text still hold: C0 controls (but tab and newline) as their Control Pictures (ESC as ␛), DEL as ␡,
# C1 controls and the bidi overrides that reorder a line as �.
_VISIBLE = {code: 0x2400 + code for code in range(0x20) if chr(code) not in "\t\n"} | {0x7F: 0x2421}
_VISIBLE |= dict.fromkeys([*range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)], 0xFFFD)


def visible(value: object) -> str:
    """Crawled or typed text made safe for a terminal: escape sequences from a page would recolour,
    retitle or clear the inspector's screen, so no control character reaches the terminal raw."""
    return ("" if value is None else str(value)).translate(_VISIBLE)


def plain(value: object, style: str = "") -> Text:
    """Crawled or typed text for rich: a ``Text`` is never parsed as markup (``[/bold]`` or
    ``[link=…]`` in a page title stays literal text), and its control characters are made ``visible``."""
    return Text(visible(value), style=style)


def local_time(value: datetime | None) -> str:
    return value.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M") if value else ""


def category_names(categories: list[str]) -> str:
    return "、".join(CATEGORY_NAMES.get(c, c) for c in categories)


def leads_table(leads: list, title: str) -> Table:
    table = Table(title=title, show_lines=False, header_style="bold")
    table.add_column("编号", justify="right")
    table.add_column("机构/名称", max_width=28)
    table.add_column("违规类型", max_width=26)
    table.add_column("严重程度", justify="center")
    table.add_column("评分", justify="right")
    table.add_column("状态")
    table.add_column("网址", max_width=48, overflow="fold")
    table.add_column("首次发现")
    table.add_column("最近发现")
    for lead in leads:
        urls = lead.urls[0] if lead.urls else ""
        if len(lead.urls) > 1:
            urls += f"\n等 {len(lead.urls)} 个网页"
        table.add_row(
            str(lead.id),
            plain(lead.name or "（未识别）"),
            plain(category_names(lead.categories)),
            plain(lead.severity, SEVERITY_STYLES.get(lead.severity, "")),
            f"{lead.score:.2f}",
            plain(STATUS_NAMES.get(lead.status, lead.status)),
            plain(urls),
            local_time(lead.first_seen),
            local_time(lead.last_seen),
        )
    return table


def lead_dict(lead) -> dict:
    return {
        "id": lead.id,
        "name": lead.name,
        "categories": list(lead.categories),
        "severity": lead.severity,
        "score": round(float(lead.score), 4),
        "status": lead.status,
        "urls": list(lead.urls),
        "first_seen": lead.first_seen.isoformat() if lead.first_seen else None,
        "last_seen": lead.last_seen.isoformat() if lead.last_seen else None,
        "findings": lead.finding_count,
    }


CSV_HEADERS = ["线索编号", "机构名称", "违规类型", "严重程度", "评分", "状态", "网址", "首次发现时间", "最近发现时间"]


def leads_csv(leads: list) -> str:
    """CSV for spreadsheets: Chinese headers, UTF-8 with BOM so Excel shows the Chinese."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADERS)
    for lead in leads:
        writer.writerow([
            lead.id, lead.name, category_names(lead.categories), lead.severity, f"{lead.score:.2f}",
            STATUS_NAMES.get(lead.status, lead.status), " ".join(lead.urls),
            local_time(lead.first_seen), local_time(lead.last_seen),
        ])
    return "\ufeff" + out.getvalue()


def leads_json(leads: list) -> str:
    return json.dumps([lead_dict(lead) for lead in leads], ensure_ascii=False, indent=2)


def summary_table(outcomes: list) -> Table:
    table = Table(title="巡查结果汇总", header_style="bold")
    for name, justify in (("来源", "left"), ("页面", "right"), ("新页面", "right"), ("错误", "right"),
                          ("新发现", "right"), ("新线索", "right"), ("结束原因", "left")):
        table.add_column(name, justify=justify)
    for o in outcomes:
        errors = str(o.errors)
        if o.errors_by_kind:
            errors += "（" + "，".join(f"{k} {v}" for k, v in sorted(o.errors_by_kind.items())) + "）"
        table.add_row(plain(o.source.name), str(o.pages), str(o.new_pages), plain(errors), str(o.new_findings),
                      str(o.new_leads), plain(FINISH_NAMES.get(o.finish_reason, o.finish_reason)))
    return table


FINISH_NAMES = {
    "finished": "完成",
    "closespider_pagecount": "达到页面上限",
    "closespider_timeout": "达到时间上限",
    "shutdown": "被中止",
    "start_unreachable": "起始网址无法访问",
    "crawler_error": "抓取程序出错",
    "killed": "抓取进程被强制结束",
    "forced_stop": "被强制停止",
    "redis_frontier_done": "共享队列的本轮已由其他进程抓完，无事可做",
}


def make_console(stderr: bool = False) -> Console:
    """The console of every command: markup and emoji codes off, so no string it prints is ever parsed
    (``[/bold]`` in a page title cannot crash a screen, ``[link=…]`` cannot make a link); the code's own
    styles are ``Text`` styles, and crawled or typed strings go through ``plain``."""
    return Console(stderr=stderr, soft_wrap=False, markup=False, emoji=False)
