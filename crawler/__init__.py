"""xunjian application: Scrapy settings, pipelines, middlewares, sources, CLI."""
