"""Site spider: follows in-domain links from the start pages within depth and page limits."""

from __future__ import annotations

from scrapy.linkextractors import LinkExtractor

from spiders.base import SourceSpider


class SiteSpider(SourceSpider):
    name = "site"
    kind = "site"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Hosts are enforced by Scrapy's offsite middleware (which ignores ports, unlike allow_domains).
        self._links = LinkExtractor(unique=True)

    def parse(self, response, **kwargs):
        item = self.page_item(response)
        if item is not None:
            yield item
        if not hasattr(response, "text"):
            return
        # Links are followed even when the page is unchanged (page_item gives None for a stored body).
        for link in self._links.extract_links(response):
            if self.wants(link.url):
                yield self.request(link.url, self.parse)
