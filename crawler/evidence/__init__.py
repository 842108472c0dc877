"""Evidence capture for flagged pages: WARC records, browser screenshots and WACZ packages."""
