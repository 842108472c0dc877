"""StorePipeline: buffers pages and writes them in short transactions (pages, snapshots, findings, leads).

Each batch is one transaction, so a crash loses at most the pages still in the buffer and never leaves
half a page in the database; re-crawling unchanged content adds nothing.
"""

from __future__ import annotations

import time

from scrapy import signals

from crawler.db import database_for
from crawler.items import PageItem
from storage.records import BatchResult, FindingRecord, PageRecord
from storage.repository import finish_run, start_run, store_batch

FINDING_FIELDS = ("category", "subcategory", "rule", "severity", "start", "end", "text", "normalized",
                  "explanation", "basis")


def to_record(item: PageItem) -> PageRecord:
    return PageRecord(
        source=item.source,
        url=item.url,
        requested_url=item.requested_url,
        final_url=item.url,
        fetched_at=item.fetched_at,
        status=item.status,
        headers=item.headers,
        encoding=item.encoding,
        title=item.title,
        text=item.text,
        fields=item.fields,
        image_urls=item.image_urls,
        content_hash=item.content_hash,
        categories=item.categories,
        score=item.score,
        rules_version=item.rules_version,
        findings=[FindingRecord(**{k: f[k] for k in FINDING_FIELDS}) for f in item.findings],
        evidence=list(item.evidence),
    )


class StorePipeline:
    def __init__(self, crawler):
        settings = crawler.settings
        self.crawler = crawler
        self.stats = crawler.stats
        self.db = database_for(settings.get("XUNJIAN_DB_URL") or None)
        self.batch_size = settings.getint("XUNJIAN_STORE_BATCH", 50)
        self.interval = settings.getfloat("XUNJIAN_STORE_INTERVAL", 2.0)
        self.lead_categories = set(settings.getlist("XUNJIAN_LEAD_CATEGORIES"))
        self.buffer: list[PageRecord] = []
        self.last_flush = time.monotonic()
        self.totals = BatchResult(0, 0, 0, 0, 0)
        self.run_id: int | None = None

    @classmethod
    def from_crawler(cls, crawler):
        pipeline = cls(crawler)
        crawler.signals.connect(pipeline.spider_closed, signal=signals.spider_closed)
        return pipeline

    def open_spider(self, spider=None) -> None:
        spider = spider or self.crawler.spider
        source = spider.source
        self.run_id = start_run(self.db, source.name, source.kind, source.as_config())
        self.stats.set_value("xunjian/run_id", self.run_id)
        settings = self.crawler.settings
        resumed = settings.getint("XUNJIAN_RESUMED_RUN", 0)
        if resumed:  # health judges a resumed run together with the runs it continues
            self.stats.set_value("xunjian/resumed_from", resumed)
        jobdir = settings.get("JOBDIR")
        if jobdir:  # a "shutdown" of this run is resumable by the next one
            from crawler.jobdir import record_run

            self.stats.set_value("xunjian/jobdir", 1)
            record_run(jobdir, self.run_id)  # so the next run can close this one's record if this process dies

    def process_item(self, item: PageItem, spider=None) -> PageItem:
        self.buffer.append(to_record(item))
        item.html = ""  # the raw markup is not kept in memory once recorded
        if len(self.buffer) >= self.batch_size or time.monotonic() - self.last_flush >= self.interval:
            self.flush()
        return item

    def flush(self) -> None:
        if self.buffer:
            batch, self.buffer = self.buffer, []
            result = store_batch(self.db, self.run_id, batch, lead_categories=self.lead_categories)
            self.totals += result
            for name in ("pages", "new_pages", "new_snapshots", "new_findings", "new_leads"):
                self.stats.set_value(f"xunjian/store/{name}", getattr(self.totals, name))
        self.last_flush = time.monotonic()

    def close_spider(self, spider=None) -> None:
        self.flush()

    def spider_closed(self, spider, reason: str) -> None:
        """Record the run once Scrapy knows why it ended (after the last flush)."""
        if self.run_id is None:  # the spider never opened (start_run itself failed): nothing to record
            return
        self.flush()
        stats = self.stats.get_stats()
        if stats.get("xunjian/start_unreachable"):
            reason = "start_unreachable"
        finish_run(
            self.db,
            self.run_id,
            finish_reason=reason,
            stats={k: v for k, v in stats.items() if isinstance(v, (int, float, str))},
            # Unchanged pages (304, or the same body) were seen too, though nothing new was stored.
            pages=self.totals.pages + int(stats.get("xunjian/not_modified", 0)) + int(stats.get("xunjian/unchanged", 0)),
            errors=int(stats.get("xunjian/errors", 0)),
            new_findings=self.totals.new_findings,
            new_leads=self.totals.new_leads,
        )
