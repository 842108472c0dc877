"""Sitemap spider: reads sitemaps (or robots.txt Sitemap: lines) and stores every listed page."""

from __future__ import annotations

from scrapy.utils.gz import gunzip
from scrapy.utils.sitemap import Sitemap, sitemap_urls_from_robots

from spiders.base import SourceSpider


class SitemapSourceSpider(SourceSpider):
    name = "sitemap"
    kind = "sitemap"

    def parse(self, response, **kwargs):
        if response.url.endswith("/robots.txt"):
            for url in sitemap_urls_from_robots(response.text, base_url=response.url):
                yield self.request(url, self.parse)
            return
        body = response.body
        if body[:2] == b"\x1f\x8b":
            body = gunzip(body)
        try:
            sitemap = Sitemap(body)
        except Exception:  # lxml raises several types on non-XML bodies
            sitemap = None
        if sitemap is None or sitemap.type not in ("urlset", "sitemapindex"):
            self.crawler.stats.inc_value("xunjian/errors/not_a_sitemap")
            self.crawler.stats.inc_value("xunjian/errors")
            self.logger.warning("not a sitemap: %s", response.url)
            return
        for entry in sitemap:
            url = entry.get("loc", "").strip()
            if not url:
                continue
            if sitemap.type == "sitemapindex":
                yield self.request(url, self.parse)
            elif self.wants(url):
                yield self.request(url, self.parse_page)

    def parse_page(self, response, **kwargs):
        item = self.page_item(response)
        if item is not None:
            yield item
