"""Crawl health: is a source still being crawled properly?  And alerts when it is not.

``assess(runs)`` looks at a source's newest runs (newest first) and returns a ``Health``.  A source is
unhealthy (异常) when its last run

- failed: it did not finish, or ended with a reason other than a normal finish, a page/time limit or
  a stop by signal (``start_unreachable``, a crashed crawl process ...);
- was stopped by a signal (``shutdown``) for the ``MAX_SHUTDOWNS``-th time in a row: the crawl never
  gets to its end.  A single ``shutdown`` is healthy: with a JOBDIR (stat ``xunjian/jobdir``) the next
  run resumes it, without one it was a foreground crawl stopped by hand;
- got mostly errors: more errors than pages;
- yielded far fewer pages than before: under ``DROP_RATIO`` of the median of the previous
  successful runs (at least ``MIN_HISTORY`` of them, at most ``HISTORY``; ``shutdown`` runs never
  count as history);
- found its selectors no longer matching: every listing page without detail links, or every page
  without the configured title or body.

A finished run that resumed interrupted runs (stat ``xunjian/resumed_from``, possibly a chain of them)
did only the rest of the work, so it is judged on the pages, errors and selector counts of the whole
chain, and so is every run in the page history.

``alert(...)`` logs the alert and, when ``XUNJIAN_WEBHOOK_URL`` is set, POSTs it as JSON there.  The
webhook is an outbound door like any other: http(s) only, public addresses only unless the operator sets
``XUNJIAN_WEBHOOK_ALLOW_PRIVATE=1`` (an intranet alert receiver, the tests), no redirects followed, and a
failed delivery logs the URL without its credentials or query (where tokens live).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import statistics
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from urllib.parse import urlsplit

from crawler.netpolicy import REASONS, Blocked, check_url
from storage.runs import RunView

log = logging.getLogger("xunjian.health")

WEBHOOK_ENV = "XUNJIAN_WEBHOOK_URL"
WEBHOOK_ALLOW_PRIVATE_ENV = "XUNJIAN_WEBHOOK_ALLOW_PRIVATE"
OK_REASONS = frozenset({"finished", "closespider_pagecount", "closespider_timeout", "closespider_itemcount"})
HISTORY = 5
MIN_HISTORY = 1
DROP_RATIO = 0.5
FETCH = 20  # runs read per source: enough to find HISTORY successful ones among failures
WEBHOOK_TIMEOUT = 10.0
STOPPED = "shutdown"  # Scrapy's finish reason after a signal: resumable when the run had a JOBDIR
# A Redis worker that joined a labelled run its peers had already finished: it crawled nothing and
# failed at nothing, so health looks past it to the runs that did the work.
FRONTIER_DONE = "redis_frontier_done"
MAX_SHUTDOWNS = 3
RESUMED_FROM = "xunjian/resumed_from"
CHAIN_KEYS = ("xunjian/listing_pages", "xunjian/selectors/")  # stats summed over a resumed chain


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


def _chain(run: RunView, by_id: dict[int, RunView]) -> list[RunView]:
    """``run`` and the interrupted runs it resumed, newest first (only those among ``by_id``)."""
    chain = [run]
    seen = {run.id}
    previous = run.stats.get(RESUMED_FROM)
    while isinstance(previous, int) and previous not in seen and previous in by_id:
        earlier = by_id[previous]
        if earlier.finish_reason != STOPPED:
            break
        chain.append(earlier)
        seen.add(previous)
        previous = earlier.stats.get(RESUMED_FROM)
    return chain


def _combined(run: RunView, by_id: dict[int, RunView]) -> RunView:
    """``run`` with the pages, errors and selector counts of its whole resume chain."""
    chain = _chain(run, by_id)
    if len(chain) == 1:
        return run
    stats = dict(run.stats)
    for key in {k for r in chain for k in r.stats if k.startswith(CHAIN_KEYS)}:
        stats[key] = sum(_stat(r, key) for r in chain)
    return replace(run, pages=sum(r.pages for r in chain), errors=sum(r.errors for r in chain), stats=stats)


def _stopped(runs: list[RunView]) -> Health:
    """The last run was stopped by a signal: fine once, a failure when it keeps happening."""
    last = runs[0]
    recent = runs[:MAX_SHUTDOWNS]
    if len(recent) == MAX_SHUTDOWNS and all(r.finish_reason == STOPPED for r in recent):
        return Health(False, f"连续 {MAX_SHUTDOWNS} 次被中止，抓取始终没有完成", last)
    if _stat(last, "xunjian/jobdir"):
        return Health(True, "上次抓取被停止，下次运行将从断点继续", last)
    return Health(True, "上次抓取被人工中止", last)


def assess(runs: list[RunView], running: bool = False) -> Health:
    """The health of one source from its runs, newest first."""
    runs = [run for run in runs if run.finish_reason != FRONTIER_DONE]
    if not runs:
        return Health(True, "尚无抓取记录")
    last = runs[0]
    if last.finished_at is None:
        if running:
            return Health(True, "正在抓取", last)
        return Health(False, "上次抓取没有正常结束（进程中断）", last)
    reason = last.finish_reason or ""
    if reason == STOPPED:
        return _stopped(runs)
    if reason not in OK_REASONS:
        return Health(False, f"上次抓取失败：{finish_name(reason)}", last)
    by_id = {run.id: run for run in runs}
    whole = _combined(last, by_id)
    resumed = f"（含续抓前的 {len(_chain(last, by_id)) - 1} 次中断抓取）" if whole is not last else ""
    if whole.errors > whole.pages:
        return Health(False, f"错误过多：错误 {whole.errors} 次，页面只有 {whole.pages} 个{resumed}", last)
    selectors = _selector_problem(whole)
    if selectors:
        return Health(False, selectors + resumed, last)
    history = [_combined(run, by_id).pages for run in runs[1:] if _succeeded(run)][:HISTORY]
    if len(history) >= MIN_HISTORY:
        median = statistics.median(history)
        if whole.pages < DROP_RATIO * median:
            return Health(False, f"页面数骤降：本次 {whole.pages} 个{resumed}，近 {len(history)} 次中位数 {median:g} 个",
                          last)
    return Health(True, "", last)


def source_health(db, source: str, running: bool = False) -> Health:
    """``assess`` over the newest ``FETCH`` runs of ``source`` in ``db``."""
    from storage.runs import list_runs

    return assess(list_runs(db, source, FETCH), running=running)


_UNSAFE_URL_CHARS = re.compile(r"[\x00-\x20\x7f]")  # http.client would refuse them, echoing the query


def redact_url(url: str) -> str:
    """``url`` fit for a log: no ``user:pass@``, and the query and fragment (where tokens live) as ``…``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "（无法解析的网址）"
    shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    return shown + ("?…" if parts.query else "") + ("#…" if parts.fragment else "")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would be followed as a GET without the alert, to an address nobody checked: it is
    reported as a failed delivery instead."""

    def redirect_request(self, *args):
        return None


def post_webhook(url: str, payload: dict) -> bool:
    """POST ``payload`` as JSON; log (never raise) when the webhook is refused or cannot be reached."""
    allow_private = os.environ.get(WEBHOOK_ALLOW_PRIVATE_ENV, "").strip().lower() in ("1", "true", "yes")
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    try:
        if _UNSAFE_URL_CHARS.search(url):
            raise Blocked(url, "invalid")
        check_url(url, allow_private=allow_private)
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
        )
        with urllib.request.build_opener(_NoRedirects).open(request, timeout=WEBHOOK_TIMEOUT) as response:
            response.read()
        return True
    except Blocked as exc:
        hint = f"；内网接收端请设置 {WEBHOOK_ALLOW_PRIVATE_ENV}=1" if exc.address else ""
        log.error("告警推送被拒绝：%s（%s%s）", redact_url(url), REASONS[exc.reason], hint)
        return False
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        log.error("告警推送失败：%s（%s）", redact_url(url), exc)
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
