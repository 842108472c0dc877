"""Crawl throughput: bare Scrapy vs. the full xunjian pipeline vs. two processes on a Redis frontier.

    .venv/bin/python benchmarks/crawl_bench.py [--pages 5000] [--sizes small,large,markup] [--no-redis] [--repeat N]

Generates a linked site of Chinese ad-like pages (small ~3 KB of text; large ~30 KB that is nearly all
text, the worst case; markup ~30 KB shaped like a real classifieds page, navigation, sidebar, scripts and
styles around ~3 KB of ad text; one page in ten carries violations so detection and storage have work) served by a threaded HTTP server in its own
process on 127.0.0.1, then crawls it the whole way:

* bare   -- a minimal Scrapy spider following every link; no pipelines, same concurrency;
* full   -- xunjian's runner (extraction + detection + evidence WARC/text + SQLite storage,
            conditional-request and URL middlewares), screenshots off (XUNJIAN_SCREENSHOTS=False),
            AutoThrottle off, once with gc.freeze() after start-up and once without;
* redis  -- two full-pipeline processes sharing one Redis frontier (needs redis-server on PATH or
            XUNJIAN_BENCH_REDIS_URL); they run on cores 0 and 1, the others on core 0 only.

Pages/s is responses received / Scrapy's elapsed time (from spider_opened to spider_closed: the
crawler's own start-up outside it, but whatever spider_opened handlers do inside it, e.g. xunjian's
gc.freeze() and database opening); 起步秒 is the time from spider_opened to the first response, and
稳态页/秒 the rate from the first response to the last. CPU is counted from spider_opened. Peak RSS is
the crawl process's maximum resident set. Not a test: run it by hand and copy the figures into README.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# name -> (page size in bytes, share of it that is visible text). "large" is the worst case for
# extraction and detection (a 30 KB page that is nearly all text); "markup" is a 30 KB page shaped like
# a real classifieds page: navigation, sidebars, scripts and styles around a few KB of ad text.
SIZES = {"small": (3_000, 1.0), "large": (30_000, 1.0), "markup": (30_000, 0.12)}

PHRASES = [
    "本周末社区广场有二手家具市集，欢迎街坊选购。",
    "出售九成新电动车一辆，价格面议，可来店看车。",
    "小区门口新开早餐店，豆浆油条每天现做。",
    "本周六上午社区义诊，免费测量血压血糖。",
    "手机维修换屏换电池，当场取件，质保三个月。",
    "同城搬运服务，车辆齐全，价格公道。",
    "宠物美容店开业酬宾，洗澡修剪八折优惠。",
    "老房翻新装修，免费出设计方案和报价。",
    "水果店新到一批脐橙，香甜多汁，整箱更优惠。",
    "二手自行车转让，车况良好，欢迎看车。",
]
VIOLATIONS = [
    "初三数学一对一辅导，暑假集训班火热招生，保证提分三十分，不提分全额退款！",
    "初二英语一对一辅导，寒假集训班招生，保证提分，不提分全额退款！",
    "小学语文一对一辅导，周末集训班火热招生，保证提分二十分！",
]


# --- the generated site -------------------------------------------------------------------------
def page_links(i: int, pages: int) -> list[int]:
    rng = random.Random(i * 7919)
    out = [2 * i + 1, 2 * i + 2, i + 1] + [rng.randrange(pages) for _ in range(3)]
    return [j for j in out if j < pages]


CATEGORIES = ["二手市场", "房屋租售", "招聘求职", "生活服务", "教育培训", "宠物", "车辆买卖", "本地商家"]


def _chrome(i: int, rng: random.Random, budget: int) -> tuple[str, str]:
    """Site chrome of about ``budget`` bytes: (before the ad, after it)."""
    nav = "".join(f'<li class="nav-item"><a class="nav-link" href="/p/{k}.html">{c}</a></li>'
                  for k, c in enumerate(CATEGORIES))
    script = "var cfg={" + ",".join(f'"k{k}":"{rng.random():.12f}"' for k in range(40)) + "};"
    style = "".join(f".c{k}{{margin:{k % 7}px;padding:{k % 5}px;color:#{k * 2654435 % 0xFFFFFF:06x}}}" for k in range(60))
    before = (f'<style>{style}</style><script>{script}</script><header class="site-header"><div class="logo">'
              f'<a href="/p/0.html">滨江分类信息网</a></div><nav class="main-nav"><ul>{nav}</ul></nav></header>'
              f'<div class="breadcrumb"><a href="/p/0.html">首页</a> &gt; <a href="/p/{i % 8}.html">分类</a></div>'
              f'<div class="layout"><main class="content">')
    side = []
    while len("".join(side).encode()) + len(before.encode()) < budget:
        k = rng.randrange(8)
        side.append(f'<li class="side-item c{k}"><a href="/p/{k}.html" title="{CATEGORIES[k]}">'
                    f'{CATEGORIES[k]}热门信息</a><span class="count">{rng.randrange(999)}</span></li>')
    after = (f'</main><aside class="sidebar"><ul>{"".join(side)}</ul></aside></div>'
             f'<footer class="site-footer"><p class="copyright">© 2026 滨江分类信息网 版权所有</p></footer>')
    return before, after


def render_page(i: int, pages: int, size: int, text_share: float = 1.0) -> bytes:
    rng = random.Random(i)
    title = f"第{i}号广告 · {rng.choice(PHRASES)[:10]}"
    parts = []
    if i % 10 == 3:  # one page in ten carries a violation
        parts.append(VIOLATIONS[i % len(VIOLATIONS)])
    links = "".join(f'<li><a href="/p/{j}.html">相关信息 {j}</a></li>' for j in page_links(i, pages))
    chrome_before, chrome_after = _chrome(i, rng, int(size * (1 - text_share))) if text_share < 1 else ("", "")
    head = (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{title}</title></head>'
            f'<body>{chrome_before}<h1>{title}</h1><div class="ad-body">')
    tail = f'</div><p class="contact">联系电话：138{i:08d}</p><ul>{links}</ul>{chrome_after}</body></html>'
    used = len(head.encode()) + len(tail.encode())
    while used < size:
        phrase = rng.choice(PHRASES)
        parts.append(phrase)
        used += len(phrase.encode()) + 7
    return (head + "".join(f"<p>{p}</p>" for p in parts) + tail).encode()


def serve(pages: int, size: int, text_share: float = 1.0) -> None:
    cache: dict[int, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Without this a small page waits ~40 ms for the client's delayed ACK (headers and body are two
        # writes), and the server, not the crawler, sets the pace.
        disable_nagle_algorithm = True

        def do_GET(self):  # noqa: N802
            path = self.path.split("?")[0]
            body, status = b"", 404
            if path.startswith("/p/") and path.endswith(".html"):
                try:
                    i = int(path[3:-5])
                except ValueError:
                    i = -1
                if 0 <= i < pages:
                    if i not in cache:
                        cache[i] = render_page(i, pages, size, text_share)
                    body, status = cache[i], 200
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

    server = Server(("127.0.0.1", 0), Handler)
    print(f"URL http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


# --- crawl processes ----------------------------------------------------------------------------
def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class StatsDump:
    """Extension: prints the crawl's figures as one JSON line when the spider closes (CPU seconds and
    time spent in the garbage collector are counted from spider_opened on)."""

    def __init__(self, crawler):
        self.crawler = crawler
        self.cpu0 = 0.0
        self.gc_seconds = 0.0
        self._gc_start = 0.0
        self.opened_at = 0.0
        self.first_response = None  # seconds after spider_opened
        self.last_response = 0.0

    @classmethod
    def from_crawler(cls, crawler):
        from scrapy import signals

        ext = cls(crawler)
        crawler.signals.connect(ext.opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.closed, signal=signals.spider_closed)
        crawler.signals.connect(ext.response, signal=signals.response_received)
        return ext

    def response(self, response, request, spider):
        now = time.monotonic() - self.opened_at
        if self.first_response is None:
            self.first_response = now
        self.last_response = now

    def _on_gc(self, phase, info):
        if phase == "start":
            self._gc_start = time.process_time()
        else:
            self.gc_seconds += time.process_time() - self._gc_start

    def opened(self, spider):
        import gc

        self.cpu0 = _cpu()
        self.opened_at = time.monotonic()
        gc.callbacks.append(self._on_gc)

    def closed(self, spider, reason):
        stats = self.crawler.stats.get_stats()
        result = {
            "responses": stats.get("downloader/response_status_count/200", 0),
            "seconds": stats.get("elapsed_time_seconds", 0.0),
            "cpu": _cpu() - self.cpu0,
            "first_response": self.first_response or 0.0,
            "after_last": time.monotonic() - self.opened_at - self.last_response,
            "steady_seconds": self.last_response - (self.first_response or 0.0),
            "gc": self.gc_seconds,
            "reason": reason,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            # The script runs as __main__; Scrapy imports this extension as crawl_bench: two module copies.
            "stages": dict(getattr(sys.modules["__main__"], "STAGE_CPU", STAGE_CPU)),
        }
        print("RESULT " + json.dumps(result), flush=True)


BASE_SETTINGS = {
    "EXTENSIONS": {"scrapy.extensions.telnet.TelnetConsole": None, "crawl_bench.StatsDump": 0},
    "LOG_LEVEL": "WARNING",
    "CONCURRENT_REQUESTS": 16,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 8,
    "AUTOTHROTTLE_ENABLED": False,
}


def run_bare(url: str, pages: int) -> None:
    import scrapy
    from scrapy.crawler import CrawlerProcess
    from scrapy.linkextractors import LinkExtractor

    class BareSpider(scrapy.Spider):
        name = "bare"
        start_urls = [f"{url}/p/0.html"]
        links = LinkExtractor()

        def parse(self, response):
            for link in self.links.extract_links(response):
                yield response.follow(link.url, self.parse)

    process = CrawlerProcess({**BASE_SETTINGS, "ROBOTSTXT_OBEY": True, "CLOSESPIDER_PAGECOUNT": 0})
    process.crawl(BareSpider)
    process.start()


STAGE_CPU: dict[str, float] = {}


def _time_stages() -> None:
    """Wrap the pipelines' and the spider's per-page steps so the run reports CPU seconds per stage."""
    import functools

    from crawler.pipelines.detect import DetectPipeline
    from crawler.pipelines.extract import ExtractPipeline
    from crawler.pipelines.store import StorePipeline
    from spiders.base import SourceSpider

    def timed(name, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            start = time.process_time()
            try:
                return func(*args, **kwargs)
            finally:
                STAGE_CPU[name] = STAGE_CPU.get(name, 0.0) + time.process_time() - start
        return wrapper

    for name, owner, attr in (("page_item", SourceSpider, "page_item"), ("extract", ExtractPipeline, "process_item"),
                              ("detect", DetectPipeline, "process_item"), ("store", StorePipeline, "process_item"),
                              ("store_close", StorePipeline, "spider_closed")):
        setattr(owner, attr, timed(name, getattr(owner, attr)))


def run_full(url: str, pages: int, workdir: str, freeze: bool) -> None:
    from crawler import settings as project_settings
    from crawler.runner import run_crawl
    from crawler.sources import load_sources

    toml = Path(workdir) / "sources.toml"
    toml.write_text(
        f'[[source]]\nname = "bench"\nkind = "site"\nstart_urls = ["{url}/p/0.html"]\n'
        f'allowed_domains = ["127.0.0.1"]\nallow_private = true\nfollow = ["/p/"]\nmax_depth = 1000\nmax_pages = {pages + 100}\n'
        f'delay = 0.0\nconcurrency = 8\n', encoding="utf-8")
    os.environ["XUNJIAN_DATA_DIR"] = str(Path(workdir) / "data")
    extensions = {**project_settings.EXTENSIONS, **BASE_SETTINGS["EXTENSIONS"]}
    overrides = {**BASE_SETTINGS, "EXTENSIONS": extensions, "XUNJIAN_SCREENSHOTS": False, "XUNJIAN_GC_FREEZE": freeze,
                 "XUNJIAN_DATA_DIR": str(Path(workdir) / "data"), "LOG_LEVEL": "WARNING"}
    db = os.environ.get("XUNJIAN_BENCH_DB") or f"sqlite:///{Path(workdir) / 'bench.db'}"
    if os.environ.get("XUNJIAN_BENCH_NO_STAGES") != "1":
        _time_stages()
    run_crawl(load_sources(toml), db, log_file=Path(workdir) / f"crawl-{os.getpid()}.log",
              overrides=overrides, show_progress=False)


# --- orchestration ------------------------------------------------------------------------------
def _pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) > core else []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(pages: int, size: str) -> tuple[subprocess.Popen, str]:
    cmd = _pin(1) + [sys.executable, __file__, "serve", "--pages", str(pages), "--size", size]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("URL "):
        proc.kill()
        raise SystemExit(f"错误：基准测试网站没有启动（{cmd}）")
    return proc, line[4:].strip()


def crawl(mode: str, url: str, pages: int, core: int, env: dict | None = None, workdir: str = "",
          wait: bool = True):
    cmd = _pin(core) + [sys.executable, __file__, mode, "--url", url, "--pages", str(pages), "--workdir", workdir]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    return collect(proc) if wait else proc


def collect(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate()
    results = [json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not results:
        raise SystemExit(f"错误：爬取进程失败（退出码 {proc.returncode}）")
    return results[-1]


def start_redis() -> tuple[subprocess.Popen | None, str | None]:
    url = os.environ.get("XUNJIAN_BENCH_REDIS_URL")
    if url or not shutil.which("redis-server"):
        return None, url
    port = _free_port()
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


# size -> (wall, steady, CPU) ratios of full +gc.freeze to bare, one per alternating pair of runs
PAIR_RATIOS: dict[str, list[tuple[float, float, float]]] = {}


def _measures(result: dict) -> tuple[float, float, float]:
    """(pages/s, steady pages/s, pages per CPU-second) of one crawl."""
    steady = result.get("steady_seconds") or 0.0
    return (result["responses"] / result["seconds"] if result["seconds"] else 0.0,
            (result["responses"] - 1) / steady if steady > 0 else 0.0,
            result["responses"] / result["cpu"] if result["cpu"] else 0.0)


def _full_run(url: str, pages: int, freeze: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="xunjian-bench-") as tmp:
        return crawl("full", url, pages, 0, workdir=tmp, env={"XUNJIAN_BENCH_FREEZE": str(int(freeze))})


def bench_size(size: str, pages: int, redis_url: str | None, repeat: int = 1) -> list[dict]:
    server, url = start_server(pages, size)
    rows = []
    try:
        def row(name, result, procs=1):
            rate = result["responses"] / result["seconds"] if result["seconds"] else 0.0
            cpu_rate = result["responses"] / result["cpu"] if result["cpu"] else 0.0
            steady = result.get("steady_seconds") or 0.0
            rows.append({"size": size, "mode": name, "pages": result["responses"], "seconds": result["seconds"],
                         "rate": rate, "cpu_rate": cpu_rate, "startup": result.get("first_response", 0.0),
                         "steady_rate": (result["responses"] - 1) / steady if steady > 0 else 0.0, "gc_share": result["gc"] / (result["cpu"] or 1),
                         "rss_mb": result["rss_mb"], "procs": procs, "cpu": result["cpu"],
                         "stages": result.get("stages") or {}})

        bare = crawl("bare", url, pages, 0)
        row("bare", bare)
        row("full", _full_run(url, pages, False))
        full = _full_run(url, pages, True)
        row("full +gc.freeze", full)
        # The machine's speed drifts between runs: more pairs, each bare run right before its full run.
        pairs = [(bare, full)] + [(crawl("bare", url, pages, 0), _full_run(url, pages, True))
                                  for _ in range(repeat - 1)]
        PAIR_RATIOS[size] = [tuple(f / b if b else 0.0 for f, b in zip(_measures(f), _measures(b)))
                             for b, f in pairs]
        if redis_url:
            with tempfile.TemporaryDirectory(prefix="xunjian-bench-") as tmp:
                env = {"XUNJIAN_REDIS_URL": redis_url, "XUNJIAN_REDIS_RUN": f"bench-{size}-{time.time_ns()}",
                       "XUNJIAN_BENCH_FREEZE": "1", "XUNJIAN_BENCH_DB": f"sqlite:///{tmp}/shared.db"}
                procs = [crawl("full", url, pages, core, env=env, workdir=f"{tmp}/{core}", wait=False)
                         for core in (0, 1) if os.makedirs(f"{tmp}/{core}") is None]
                results = [collect(p) for p in procs]
                total = {"responses": sum(r["responses"] for r in results),
                         "seconds": max(r["seconds"] for r in results),
                         "cpu": sum(r["cpu"] for r in results), "gc": sum(r["gc"] for r in results),
                         "first_response": max(r["first_response"] for r in results),
                         "steady_seconds": max(r["steady_seconds"] for r in results),
                         "rss_mb": max(r["rss_mb"] for r in results)}
                row("redis ×2 +gc.freeze", total, procs=2)
    finally:
        server.terminate()
        server.wait()
    return rows


def report(rows: list[dict]) -> None:
    print(f"{'页面':<6}{'模式':<20}{'页数':>6}{'秒':>8}{'页/秒':>8}{'相对裸':>7}{'起步秒':>6}{'稳态页/秒':>8}{'相对裸':>7}"
          f"{'页/CPU秒':>9}{'相对裸':>7}{'GC占CPU':>8}{'峰值内存MB':>10}")
    for r in rows:
        bare = next(b for b in rows if b["size"] == r["size"] and b["mode"] == "bare")
        ratio = r["rate"] / bare["rate"] if bare["rate"] else 0.0
        steady_ratio = r["steady_rate"] / bare["steady_rate"] if bare["steady_rate"] else 0.0
        cpu_ratio = r["cpu_rate"] / bare["cpu_rate"] if bare["cpu_rate"] else 0.0
        print(f"{r['size']:<8}{r['mode']:<22}{r['pages']:>8}{r['seconds']:>9.1f}{r['rate']:>10.1f}{ratio:>10.0%}"
              f"{r['startup']:>9.2f}{r['steady_rate']:>12.1f}{steady_ratio:>10.0%}"
              f"{r['cpu_rate']:>12.1f}{cpu_ratio:>10.0%}{r['gc_share']:>11.0%}{r['rss_mb']:>14.0f}")
    for size, ratios in PAIR_RATIOS.items():
        if len(ratios) > 1:
            parts = []
            for k, name in enumerate(("页/秒", "稳态页/秒", "页/CPU秒")):
                values = sorted(r[k] for r in ratios)
                parts.append(f"{name} 中位 {statistics.median(values):.0%}（{values[0]:.0%}–{values[-1]:.0%}）")
            print(f"{size} 完整流水线 +gc.freeze 相对裸，交替 {len(ratios)} 对：" + "，".join(parts))
    print("每页 CPU 毫秒（单进程）：")
    for r in rows:
        if r["procs"] == 1 and r["pages"]:
            parts = [f"合计 {r['cpu'] / r['pages'] * 1000:.2f}"]
            parts += [f"{k} {v / r['pages'] * 1000:.2f}" for k, v in r["stages"].items()]
            print(f"  {r['size']:<6} {r['mode']:<20} " + "  ".join(parts))
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "serve", "bare", "full"])
    parser.add_argument("--pages", type=int, default=5000)
    parser.add_argument("--size", default="small", choices=sorted(SIZES))
    parser.add_argument("--sizes", default="small,large,markup")
    parser.add_argument("--url", default="")
    parser.add_argument("--workdir", default="")
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--repeat", type=int, default=1,
                        help="alternating bare / full +gc.freeze pairs per size; >1 prints median ratios")
    args = parser.parse_args(argv)
    if args.mode == "serve":
        return serve(args.pages, *SIZES[args.size])
    if args.mode == "bare":
        return run_bare(args.url, args.pages)
    if args.mode == "full":
        return run_full(args.url, args.pages, args.workdir, os.environ.get("XUNJIAN_BENCH_FREEZE") == "1")
    redis_proc, redis_url = (None, None) if args.no_redis else start_redis()
    try:
        rows = []
        for size in args.sizes.split(","):
            rows += bench_size(size.strip(), args.pages, redis_url, max(1, args.repeat))
            report(rows)
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
