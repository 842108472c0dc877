"""Crawl health: is a source still being crawled properly?  And alerts when it is not.

``assess(runs)`` looks at a source's newest runs (newest first) and returns a ``Health``.  A source is
unhealthy (异常) when its last run

- failed: it did not finish, or ended with a reason other than a normal finish or a page/time limit
  (``start_unreachable``, ``shutdown``, a crashed crawl process ...);
- got mostly errors: more errors than pages;
- yielded far fewer pages than before: under ``DROP_RATIO`` of the median of the previous
  successful runs (at least ``MIN_HISTORY`` of them, at most ``HISTORY``);
- found its selectors no longer matching: every listing page without detail links, or every page
  without the configured title or body.

``alert(...)`` logs the alert and, when ``XUNJIAN_WEBHOOK_URL`` is set, POSTs it as JSON there.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone

from storage.runs import RunView

log = logging.getLogger("xunjian.health")

WEBHOOK_ENV = "XUNJIAN_WEBHOOK_URL"
OK_REASONS = frozenset({"finished", "closespider_pagecount", "closespider_timeout", "closespider_itemcount"})
HISTORY = 5
MIN_HISTORY = 1
DROP_RATIO = 0.5
FETCH = 20  # runs read per source: enough to find HISTORY successful ones among failures
WEBHOOK_TIMEOUT = 10.0


@dataclass(frozen=True)
class Health:
    healthy: bool
    reason: str = ""
    run: RunView | None = None

    @property
    def label(self) -> str:
        return "健康" if self.healthy else "异常"


def finish_name(reason: str | None) -> str:
    """The finish reason as an inspector reads it."""
    from crawler.console import FINISH_NAMES

    if not reason:
        return "进行中或中断"
    if reason.startswith("exit_"):
        return f"抓取进程异常退出（退出码 {reason[5:]}）"
    return FINISH_NAMES.get(reason, reason)


def _succeeded(run: RunView) -> bool:
    return run.finished_at is not None and (run.finish_reason or "") in OK_REASONS


def _stat(run: RunView, key: str) -> int:
    value = run.stats.get(key, 0)
    return int(value) if isinstance(value, (int, float)) else 0


def _selector_problem(run: RunView) -> str:
    listing_pages = _stat(run, "xunjian/listing_pages")
    no_links = _stat(run, "xunjian/selectors/detail_link_empty")
    if listing_pages and no_links >= listing_pages:
        return f"列表页选择器失效：{listing_pages} 个列表页都没有找到详情链接（detail_link）"
    if run.pages:
        for key, name in (("title", "标题"), ("body", "正文")):
            empty = _stat(run, f"xunjian/selectors/{key}_empty")
            if empty >= run.pages:
                return f"{name}选择器失效：{run.pages} 个页面都没有匹配到{name}（{key}）"
    return ""


def assess(runs: list[RunView], running: bool = False) -> Health:
    """The health of one source from its runs, newest first."""
    if not runs:
        return Health(True, "尚无抓取记录")
    last = runs[0]
    if last.finished_at is None:
        if running:
            return Health(True, "正在抓取", last)
        return Health(False, "上次抓取没有正常结束（进程中断）", last)
    reason = last.finish_reason or ""
    if reason not in OK_REASONS:
        return Health(False, f"上次抓取失败：{finish_name(reason)}", last)
    if last.errors > last.pages:
        return Health(False, f"错误过多：错误 {last.errors} 次，页面只有 {last.pages} 个", last)
    selectors = _selector_problem(last)
    if selectors:
        return Health(False, selectors, last)
    history = [run.pages for run in runs[1:] if _succeeded(run)][:HISTORY]
    if len(history) >= MIN_HISTORY:
        median = statistics.median(history)
        if last.pages < DROP_RATIO * median:
            return Health(False, f"页面数骤降：本次 {last.pages} 个，近 {len(history)} 次中位数 {median:g} 个", last)
    return Health(True, "", last)


def source_health(db, source: str, running: bool = False) -> Health:
    """``assess`` over the newest ``FETCH`` runs of ``source`` in ``db``."""
    from storage.runs import list_runs

    return assess(list_runs(db, source, FETCH), running=running)


def post_webhook(url: str, payload: dict) -> bool:
    """POST ``payload`` as JSON; log (never raise) when the webhook cannot be reached."""
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
            response.read()
        return True
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.error("告警推送失败：%s（%s）", url, exc)
        return False


def alert(kind: str, message: str, *, source: str | None = None, details: dict | None = None,
          webhook_url: str | None = None) -> dict:
    """Log one alert and POST it to the webhook if one is configured; returns the payload."""
    payload = {
        "project": "xunjian",
        "kind": kind,
        "source": source,
        "message": message,
        "at": datetime.now(timezone.utc).isoformat(),
        "details": details or {},
    }
    where = f"来源 {source}：" if source else ""
    log.error("告警[%s] %s%s", kind, where, message)
    url = webhook_url or os.environ.get(WEBHOOK_ENV)
    if url:
        post_webhook(url, payload)
    return payload


def health_alert(source: str, health: Health) -> dict:
    run = health.run
    details = {}
    if run is not None:
        details = {"run_id": run.id, "pages": run.pages, "errors": run.errors,
                   "finish_reason": run.finish_reason,
                   "started_at": run.started_at.isoformat() if run.started_at else None}
    return alert("crawl_health", health.reason, source=source, details=details)
