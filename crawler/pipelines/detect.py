"""DetectPipeline: runs the detection engine on each page's clean text (the same engine as `xunjian detect`)."""

from __future__ import annotations

from crawler.items import PageItem
from detectors import get_engine


class DetectPipeline:
    def __init__(self, crawler):
        self.stats = crawler.stats
        self.engine = get_engine()

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_item(self, item: PageItem, spider=None) -> PageItem:
        result = self.engine.detect(item.text, title=item.title, url=item.url, gate=False)
        item.categories = list(result.categories)
        item.score = float(result.score)
        item.rules_version = result.rules_version
        item.findings = [f.to_dict() for f in result.findings]
        if item.findings:
            self.stats.inc_value("xunjian/flagged_pages")
            for category in item.categories:
                self.stats.inc_value(f"xunjian/flagged/{category}")
        return item
