"""Scrapy settings for xunjian: every default in one place.

``scrapy.cfg`` points here, so ``scrapy list`` and ``scrapy crawl KIND -a source=NAME`` work from the
project root; the ``xunjian`` CLI starts from the same module and overrides a few values per run.
"""

import os
import shutil

from crawler.version import XUNJIAN_VERSION

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
USER_AGENT = f"xunjian/{XUNJIAN_VERSION} (compliance patrol; +mailto:{XUNJIAN_CONTACT})"
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 8
# Scrapy starts this many worker tasks (and queues as many end markers) for the output of EVERY
# response, however little it yields. A page here yields one item and its links; Scrapy's 100 cost
# more CPU per page than extraction does (benchmarks/crawl_bench.py), 16 still lets the links of a
# page be scheduled while its item waits for analysis or a screenshot.
CONCURRENT_ITEMS = 16
DOWNLOAD_DELAY = 0.0
DOWNLOAD_TIMEOUT = 30
RETRY_TIMES = 1
REDIRECT_MAX_TIMES = 10
COOKIES_ENABLED = False
# AutoThrottle adapts each domain's delay to its latency; a source's `concurrency` becomes the target
# concurrency and its `delay` the start (and minimum) delay.
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 0.5
AUTOTHROTTLE_MAX_DELAY = 60.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.0
# Per-run limits: pages come from the source's max_pages; the time limit (seconds) from its
# max_minutes, else this default (0 = none).
CLOSESPIDER_TIMEOUT = 0
# 429/503 back-off: wait Retry-After seconds (or XUNJIAN_BACKOFF_DEFAULT when absent), never more than
# XUNJIAN_BACKOFF_MAX, and retry at most XUNJIAN_BACKOFF_RETRIES times.
XUNJIAN_BACKOFF_DEFAULT = 10.0
XUNJIAN_BACKOFF_MAX = 300.0
XUNJIAN_BACKOFF_RETRIES = 3
# Conditional requests (If-None-Match / If-Modified-Since from the last snapshot's ETag / Last-Modified).
XUNJIAN_CONDITIONAL = True
# Link traps: longest URL and most query parameters followed; query parameters always dropped
# (fnmatch patterns, case-insensitive) because they are session ids or tracking tags.
XUNJIAN_URL_MAX_LENGTH = 1024
XUNJIAN_URL_MAX_PARAMS = 8
XUNJIAN_URL_DROP_PARAMS = [
    "utm_*", "gclid", "fbclid", "msclkid", "yclid", "dclid", "spm", "_hsenc", "_hsmi", "mc_cid", "mc_eid",
    "jsessionid", "phpsessid", "aspsessionid*", "sid", "sessionid", "session_id", "cfid", "cftoken",
]

# --- network policy and size limits (crawler/netpolicy.py, crawler/middlewares/netpolicy.py) ---------
# Host names that may resolve to loopback, private or shared addresses: those of the sources with
# allow_private = true, filled in by the runner for the sources it crawls (literal addresses need none).
XUNJIAN_PRIVATE_HOSTS: list[str] = []
# Every host name is judged on the answer the connection uses (DNS rebinding); see PolicyResolver.
TWISTED_DNS_RESOLVER = "crawler.middlewares.netpolicy.PolicyResolver"
# Largest response body, also after decompression (gzip/deflate/brotli/zstd bombs); a source's
# max_bytes overrides it. Larger responses are refused (error kind too_large) and the crawl goes on.
DOWNLOAD_MAXSIZE = 20 * 1024 * 1024
DOWNLOAD_WARNSIZE = 5 * 1024 * 1024

# --- components --------------------------------------------------------------------------------
ITEM_PIPELINES = {
    # ExtractPipeline then DetectPipeline, a few items at a time (see crawler/pipelines/analyse.py).
    "crawler.pipelines.analyse.AnalysePipeline": 100,
    "crawler.pipelines.evidence.EvidencePipeline": 250,
    "crawler.pipelines.store.StorePipeline": 300,
}
SPIDER_MIDDLEWARES = {
    # Right after the spider (before the depth and URL-length middlewares and the dupefilter).
    "crawler.middlewares.canonical.CanonicalUrlMiddleware": 950,
}
DOWNLOADER_MIDDLEWARES = {
    # The network policy before anything else sees a request (before robots.txt is asked for), and the
    # resolver's connect-time refusals named as such before RetryMiddleware (550) would retry them.
    "crawler.middlewares.netpolicy.NetworkPolicyMiddleware": 40,
    "crawler.middlewares.netpolicy.ResolverRefusalMiddleware": 950,
    # RFC 9309 robots.txt: an unreachable robots.txt (5xx, no answer) keeps the crawler off the host,
    # where Scrapy's own middleware would allow everything.
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    "crawler.middlewares.robots.StrictRobotsTxtMiddleware": 100,
    # Sees 429/503 before RetryMiddleware (550) and retries them after Retry-After itself.
    "crawler.middlewares.retry_after.RetryAfterMiddleware": 560,
    # Adds If-None-Match / If-Modified-Since and turns a 304 into "unchanged".
    "crawler.middlewares.conditional.ConditionalRequestMiddleware": 570,
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
    "chromium_sandbox": False,  # spiders/base.py turns the sandbox on where a probe start shows it works
    "args": [
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

# Freeze the objects alive after start-up out of the cyclic GC's reach (crawler/runner.py); measured
# with benchmarks/crawl_bench.py.
XUNJIAN_GC_FREEZE = True
# With the start-up heap frozen, a crawl's young objects are nearly all short-lived and acyclic: a
# first-generation threshold of 10,000 allocations (Python's default is 700; the older generations are
# then collected every 2 young collections) cuts the collector's share of the crawl's CPU from about
# 8 % to 2-3 %, for some memory (see benchmarks/crawl_bench.py for peak RSS). 0 keeps Python's default.
XUNJIAN_GC_THRESHOLD = 10_000
# Items extracted and detected together (warm caches), and how long the first of them may wait (s).
XUNJIAN_ANALYSE_BATCH = 8
XUNJIAN_ANALYSE_WAIT = 0.02

# --- scale-out: with XUNJIAN_REDIS_URL set, crawl processes share one frontier in Redis -----------
# (scrapy-redis scheduler and duplicate filter; see crawler/redis_mode.py for the keys and settings)
from crawler.redis_mode import redis_overlay  # noqa: E402

globals().update(redis_overlay(os.environ.get("XUNJIAN_REDIS_URL", "")))
