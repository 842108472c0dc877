"""Runs configured sources once, in this process, with a live progress display.

Twisted's reactor cannot be restarted, so ``run_crawl`` may be called once per process: the CLI calls it
once per command, and scheduled crawls (a later issue) start a fresh process for each run.
"""

from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from scrapy import signals
from scrapy.crawler import CrawlerProcess
from scrapy.settings import Settings

from crawler.redis_mode import RedisSetupError, apply_redis_mode, check_redis
from crawler.sources import Source
from spiders.listing import ListingSpider
from spiders.site import SiteSpider
from spiders.sitemap import SitemapSourceSpider

logger = logging.getLogger(__name__)

SPIDERS = {"listing": ListingSpider, "site": SiteSpider, "sitemap": SitemapSourceSpider}


class CrawlSetupError(Exception):
    """Something that stops a crawl before it starts; ``str()`` is one line for the inspector."""


@dataclass
class SourceOutcome:
    source: Source
    pages: int = 0
    unchanged: int = 0  # seen again with no change (304, or the same body): nothing stored
    responses: int = 0
    errors: int = 0
    new_pages: int = 0
    new_findings: int = 0
    new_leads: int = 0
    flagged: int = 0
    finish_reason: str = ""
    run_id: int | None = None
    unreachable: list[str] = field(default_factory=list)
    failure: str = ""  # the crawler itself failed (e.g. a pipeline could not open); one line
    errors_by_kind: dict[str, int] = field(default_factory=dict)


def crawl_settings(db_url: str, log_file: Path | None, overrides: dict | None = None) -> Settings:
    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")
    apply_redis_mode(settings)  # $XUNJIAN_REDIS_URL as of now, even if crawler.settings was imported earlier
    settings.set("XUNJIAN_DB_URL", db_url, priority="cmdline")
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        settings.set("LOG_FILE", str(log_file), priority="cmdline")
    for key, value in (overrides or {}).items():
        settings.set(key, value, priority="cmdline")
    return settings


def private_hosts(sources: list[Source]) -> list[str]:
    """Host names the process's resolver lets answer private addresses: those of allow_private sources."""
    hosts = (h for s in sources if s.allow_private
             for h in (*s.allowed_domains, *(urlsplit(u).hostname for u in s.start_urls)))
    return sorted({h for h in hosts if h})


def check_browser(sources: list[Source], settings: Settings) -> None:
    needs = [s.name for s in sources if s.render]
    chromium = settings.get("XUNJIAN_CHROMIUM")
    if needs and not (chromium and os.access(chromium, os.X_OK)):
        raise CrawlSetupError(
            f"来源 {', '.join(needs)} 需要浏览器渲染，但找不到可执行的 chromium：{chromium}"
            "（请安装 Debian 的 chromium 软件包，或设置 XUNJIAN_CHROMIUM）"
        )


def run_crawl(
    sources: list[Source],
    db_url: str,
    *,
    log_file: Path | None = None,
    console: Console | None = None,
    overrides: dict | None = None,
    show_progress: bool = True,
) -> list[SourceOutcome]:
    settings = crawl_settings(db_url, log_file, overrides)
    settings.set("XUNJIAN_PRIVATE_HOSTS", private_hosts(sources), priority="cmdline")
    check_browser(sources, settings)
    try:
        check_redis(settings)
    except RedisSetupError as exc:
        raise CrawlSetupError(str(exc)) from exc
    console = console or Console(stderr=True)
    settings.set("LOG_INSTALL_ROOT_HANDLER", log_file is not None, priority="cmdline")
    process = CrawlerProcess(settings)
    outcomes: list[tuple[object, SourceOutcome]] = []
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[source]}"),
        BarColumn(bar_width=24),
        TextColumn("页面 {task.fields[pages]}  错误 {task.fields[errors]}  命中 {task.fields[flagged]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not show_progress,
    )
    for source in sources:
        crawler = process.create_crawler(SPIDERS[source.kind])
        outcome = SourceOutcome(source=source)
        task = progress.add_task("crawl", total=None, source=source.name, pages=0, errors=0, flagged=0)
        _connect_progress(crawler, progress if show_progress else None, task, outcome)
        _freeze_gc_after_startup(crawler)
        outcomes.append((crawler, outcome))
        process.crawl(crawler, source=source).addErrback(_record_failure, outcome)
    with progress:
        process.start()
    for crawler, outcome in outcomes:
        _collect(crawler, outcome)
        if outcome.failure and outcome.run_id:  # Scrapy closed it as a "shutdown"; it was not one
            from crawler.db import database_for
            from storage.repository import fail_run

            fail_run(database_for(db_url), outcome.run_id, outcome.finish_reason, outcome.failure)
    return [o for _, o in outcomes]


def _connect_progress(crawler, progress: Progress | None, task, outcome: SourceOutcome) -> None:
    """Count pages for the summary; drive the progress bar too when one is shown."""
    def on_item(item, response, spider):
        outcome.pages += 1
        if getattr(item, "findings", None):
            outcome.flagged += 1
        if progress is not None:
            progress.update(task, pages=outcome.pages, flagged=outcome.flagged)

    def on_response(response, request, spider):
        outcome.responses += 1
        if progress is not None:
            progress.update(task, advance=1)

    def on_closed(spider, reason):
        if progress is not None:
            errors = crawler.stats.get_value("xunjian/errors", 0)
            progress.update(task, errors=errors, total=outcome.responses or 1, completed=outcome.responses or 1)

    for handler, signal in ((on_item, signals.item_scraped), (on_response, signals.response_received),
                            (on_closed, signals.spider_closed)):
        crawler.signals.connect(handler, signal=signal, weak=False)


def _record_failure(failure, outcome: SourceOutcome) -> None:
    """A crawler that failed to start or crashed: keep one line for the inspector (the traceback goes
    to the log), instead of letting the other sources' success hide it."""
    logger.error("crawl of source %s failed", outcome.source.name,
                 exc_info=(failure.type, failure.value, failure.getTracebackObject()))
    message = str(failure.value).strip().splitlines()
    outcome.failure = f"{failure.type.__name__}: {message[0]}" if message else failure.type.__name__


def _collect(crawler, outcome: SourceOutcome) -> None:
    stats = crawler.stats.get_stats() if crawler.stats else {}
    outcome.errors = int(stats.get("xunjian/errors", 0))
    outcome.errors_by_kind = {
        k.rsplit("/", 1)[1]: int(v) for k, v in stats.items() if k.startswith("xunjian/errors/")
    }
    outcome.new_pages = int(stats.get("xunjian/store/new_pages", 0))
    outcome.new_findings = int(stats.get("xunjian/store/new_findings", 0))
    outcome.new_leads = int(stats.get("xunjian/store/new_leads", 0))
    outcome.finish_reason = str(stats.get("finish_reason", ""))
    outcome.run_id = stats.get("xunjian/run_id")
    outcome.unchanged = int(stats.get("xunjian/not_modified", 0)) + int(stats.get("xunjian/unchanged", 0))
    spider = crawler.spider
    if spider is not None:
        outcome.unreachable = list(getattr(spider, "unreachable_start", []))
    if outcome.unreachable:
        outcome.finish_reason = "start_unreachable"
    if outcome.failure:
        outcome.finish_reason = "crawler_error"


def _freeze_gc_after_startup(crawler) -> None:
    """Once the spider is open (rule packs, automata and modules loaded), move everything alive into
    the garbage collector's permanent generation: the cyclic GC then stops rescanning those objects on
    every collection, which otherwise costs a large share of a crawl's CPU. ``XUNJIAN_GC_FREEZE=False``
    turns it off. No full collection first: start-up leaves next to no cyclic garbage (about ten
    unreachable objects among ~400,000 tracked, measured), and collecting them cost 0.12 s per crawl."""
    if not crawler.settings.getbool("XUNJIAN_GC_FREEZE", True):
        return

    def on_opened(spider):
        gc.freeze()
        threshold = crawler.settings.getint("XUNJIAN_GC_THRESHOLD", 0)
        if threshold:
            # Older generations every 2 young collections (Python: 10), so garbage that survived a young
            # collection is not kept a hundred times longer than with the defaults (peak RSS).
            gc.set_threshold(threshold, 2, 2)

    crawler.signals.connect(on_opened, signal=signals.spider_opened, weak=False)
