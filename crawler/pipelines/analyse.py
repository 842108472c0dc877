"""AnalysePipeline: extraction and detection for a few pages at a time, one stage after the other.

Between two pages Scrapy's own work (downloads, link extraction, scheduling) pushes the parser's and
the detector's tables out of the CPU caches, and a page then costs 1.5-3 times what it costs in a
loop (benchmarks/cache_bench.py). So items wait here, for at most ``XUNJIAN_ANALYSE_WAIT`` seconds,
until ``XUNJIAN_ANALYSE_BATCH`` of them have arrived; then all of them are extracted, then all
detected. Each item leaves with its own result, or its own error, exactly as through ExtractPipeline
and DetectPipeline one by one. A batch size of 1 does just that.
"""

from __future__ import annotations

import asyncio

from crawler.items import PageItem
from crawler.pipelines.detect import DetectPipeline
from crawler.pipelines.extract import ExtractPipeline


class AnalysePipeline:
    def __init__(self, crawler):
        settings = crawler.settings
        self.stages = (ExtractPipeline(crawler), DetectPipeline(crawler))
        self.size = max(1, settings.getint("XUNJIAN_ANALYSE_BATCH", 8))
        self.wait = settings.getfloat("XUNJIAN_ANALYSE_WAIT", 0.02)
        self.pending: list[tuple[PageItem, asyncio.Future]] = []
        self.timer: asyncio.TimerHandle | None = None

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    async def process_item(self, item: PageItem) -> PageItem:
        if self.size == 1:
            for stage in self.stages:
                stage.process_item(item)
            return item
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((item, future))
        if len(self.pending) >= self.size:
            self.run()
        elif self.timer is None:
            self.timer = loop.call_later(self.wait, self.run)
        return await future

    def run(self) -> None:
        """Analyse the waiting items now, stage by stage, and hand each its outcome."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending = self.pending, []
        failed: dict[int, Exception] = {}
        for stage in self.stages:
            for i, (item, _) in enumerate(batch):
                if i not in failed:
                    try:
                        stage.process_item(item)
                    except Exception as error:  # noqa: BLE001 - one page's error is that item's, as unbatched
                        failed[i] = error
        for i, (item, future) in enumerate(batch):
            if future.done():  # its crawl was cancelled meanwhile
                continue
            if i in failed:
                future.set_exception(failed[i])
            else:
                future.set_result(item)

    def close_spider(self, spider=None) -> None:
        if self.pending:
            self.run()
