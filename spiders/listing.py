"""Listing → detail spider: walks paginated listing pages and stores each detail page."""

from __future__ import annotations

from parsel import Selector

from crawler.sources import selector_query
from spiders.base import SourceSpider


class ListingSpider(SourceSpider):
    """Listing pages are navigation: their detail links and next-page link are followed, and only
    the detail pages become items (a listing of ad titles is not evidence of one advertiser)."""

    name = "listing"
    kind = "listing"

    def parse(self, response, **kwargs):
        if not hasattr(response, "text"):
            return
        self.crawler.stats.inc_value("xunjian/listing_pages")
        sel = Selector(text=response.text)
        selectors = self.source.selectors
        links = self._links(response, sel, selectors.detail_link)
        if not links:
            self.crawler.stats.inc_value("xunjian/selectors/detail_link_empty")
        for url in links:
            yield self.request(url, self.parse_detail)
        if selectors.next_page:
            for url in self._links(response, sel, selectors.next_page)[:1]:
                yield self.request(url, self.parse)

    def _links(self, response, sel: Selector, query: str) -> list[str]:
        found = []
        for node in selector_query(sel, query):
            href = node.attrib.get("href") if hasattr(node, "attrib") else None
            href = href or node.get()
            if href and not href.lstrip().startswith(("javascript:", "mailto:", "tel:", "#")):
                url = response.urljoin(href.strip())
                if self.wants(url):
                    found.append(url)
        return list(dict.fromkeys(found))

    def parse_detail(self, response, **kwargs):
        item = self.page_item(response)
        if item is not None:
            yield item
