"""Scrapy settings for xunjian: every default in one place.

``scrapy.cfg`` points here, so ``scrapy list`` and ``scrapy crawl KIND -a source=NAME`` work from the
project root; the ``xunjian`` CLI starts from the same module and overrides a few values per run.
"""

import os
import shutil

BOT_NAME = "xunjian"
SPIDER_MODULES = ["spiders"]
NEWSPIDER_MODULE = "spiders"

# --- xunjian's own settings -------------------------------------------------------------------
# Source registry and database (the CLI's --sources / --db override these).
XUNJIAN_SOURCES = os.environ.get("XUNJIAN_SOURCES", "sources.toml")
XUNJIAN_DB_URL = os.environ.get("XUNJIAN_DB_URL", "")
# Contact address announced in the User-Agent so site owners can reach the operator.
XUNJIAN_CONTACT = os.environ.get("XUNJIAN_CONTACT", "patrol@example.org")
# Pages stored per database transaction, and the longest a page waits in the buffer (seconds).
XUNJIAN_STORE_BATCH = 50
XUNJIAN_STORE_INTERVAL = 2.0
# Categories that turn findings into leads (minor_training_ad is stored but not a lead by default).
XUNJIAN_LEAD_CATEGORIES = ["banned_ad", "exaggerated_marketing", "disguised_tutoring"]
# Browser used for sources with render = true (Debian's chromium; never a downloaded build).
XUNJIAN_CHROMIUM = os.environ.get("XUNJIAN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

# --- politeness --------------------------------------------------------------------------------
USER_AGENT = f"xunjian/0.1 (compliance patrol; +mailto:{XUNJIAN_CONTACT})"
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 8
DOWNLOAD_DELAY = 0.0
DOWNLOAD_TIMEOUT = 30
RETRY_TIMES = 1
REDIRECT_MAX_TIMES = 10
COOKIES_ENABLED = False

# --- components --------------------------------------------------------------------------------
ITEM_PIPELINES = {
    "crawler.pipelines.extract.ExtractPipeline": 100,
    "crawler.pipelines.detect.DetectPipeline": 200,
    "crawler.pipelines.evidence.EvidencePipeline": 250,
    "crawler.pipelines.store.StorePipeline": 300,
}
DOWNLOADER_MIDDLEWARES = {
    # Just below RedirectMiddleware (600), so it sees 3xx responses first.
    "crawler.middlewares.redirect_loop.RedirectLoopMiddleware": 650,
}
EXTENSIONS = {
    # Neither a telnet console nor a code-executing HTTP endpoint belongs in an unattended crawler.
    "scrapy.extensions.telnet.TelnetConsole": None,
    "scrapy.extensions.remote_control.RemoteControl": None,
}
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False

# --- rendering: scrapy-playwright, used only by requests that ask for it ------------------------
DOWNLOAD_HANDLERS = {
    "http": "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
    "https": "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
}
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
PLAYWRIGHT_BROWSER_TYPE = "chromium"
PLAYWRIGHT_LAUNCH_OPTIONS = {
    "executable_path": XUNJIAN_CHROMIUM,
    "headless": True,
    "args": [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ],
}
PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT = 30_000
PLAYWRIGHT_MAX_CONTEXTS = 2

LOG_LEVEL = "INFO"
FEED_EXPORT_ENCODING = "utf-8"
