"""AnalysePipeline: extraction and detection a few items at a time, each item with its own outcome."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
from scrapy.utils.test import get_crawler

from crawler.items import PageItem
from crawler.pipelines.analyse import AnalysePipeline
from crawler.pipelines.detect import DetectPipeline
from crawler.pipelines.extract import ExtractPipeline

PAGES = [
    "<html><head><title>初三数学冲刺</title></head><body><p>初三数学一对一辅导，保证提分三十分，不提分全额退款！</p></body></html>",
    "<html><head><title>二手家具</title></head><body><p>出售九成新电动车一辆，价格面议。</p></body></html>",
    "<html><head><title>暑假托管</title></head><body><p>小学暑假托管班，每天辅导语文数学作业，名额有限。</p></body></html>",
]


def page(i: int, html: str, selectors: dict[str, str] | None = None) -> PageItem:
    url = f"http://127.0.0.1:8000/ad/{i}.html"
    return PageItem(source="s", url=url, requested_url=url, fetched_at=datetime.now(timezone.utc), status=200,
                    headers={}, encoding="utf-8", content_hash=str(i), html=html, selectors=selectors or {})


def analysed(items: list[PageItem], **settings) -> list[PageItem | BaseException]:
    pipeline = AnalysePipeline(get_crawler(settings_dict=settings))

    async def all_of():
        return await asyncio.wait_for(asyncio.gather(*(pipeline.process_item(item) for item in items),
                                                     return_exceptions=True), 30)

    return asyncio.run(all_of())


def one_by_one(item: PageItem) -> PageItem:
    crawler = get_crawler()
    return DetectPipeline(crawler).process_item(ExtractPipeline(crawler).process_item(item))


@pytest.mark.parametrize("batch", [1, 2, 8])
def test_a_batch_gives_each_item_what_the_pipelines_give_one_by_one(batch):
    results = analysed([page(i, html) for i, html in enumerate(PAGES)], XUNJIAN_ANALYSE_BATCH=batch,
                       XUNJIAN_ANALYSE_WAIT=0.01)
    expected = [one_by_one(page(i, html)) for i, html in enumerate(PAGES)]
    assert [(r.url, r.title, r.text, r.findings, r.categories) for r in results] == \
           [(e.url, e.title, e.text, e.findings, e.categories) for e in expected]
    assert results[0].findings and not results[1].findings  # the comparison has something to compare


def test_one_items_error_stays_with_that_item():
    items = [page(0, PAGES[0]), page(1, PAGES[1], {"title": "xpath://p[", "body": "p"}), page(2, PAGES[2])]
    results = analysed(items, XUNJIAN_ANALYSE_BATCH=8, XUNJIAN_ANALYSE_WAIT=0.01)
    assert isinstance(results[1], ValueError)
    assert results[0].findings and results[2].title == "暑假托管"


def test_a_full_batch_does_not_wait_for_the_timer():
    # With an hour to wait, only a full batch can finish the items (wait_for gives up after 30 s).
    results = analysed([page(i, html) for i, html in enumerate(PAGES[:2])], XUNJIAN_ANALYSE_BATCH=2,
                       XUNJIAN_ANALYSE_WAIT=3600)
    assert [r.title for r in results] == ["初三数学冲刺", "二手家具"]
