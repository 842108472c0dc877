"""Scale-out: two crawl processes share one frontier in Redis and one PostgreSQL database.

Needs a real redis-server and PostgreSQL on 127.0.0.1 (./run-tests starts both and exports
XUNJIAN_TEST_REDIS_URL and XUNJIAN_TEST_PG_URL). The demo site's access log shows which pages were
fetched and how often; the leads of the two-process run must equal those of a single-process run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import uuid
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import pytest

from crawler.demo import SOURCES_FILE
from tests.conftest import ROOT, pg_schema_url, run_cli

REDIS_URL = os.environ.get("XUNJIAN_TEST_REDIS_URL")
PG_URL = os.environ.get("XUNJIAN_TEST_PG_URL")

needs_services = pytest.mark.skipif(
    not (REDIS_URL and PG_URL),
    reason="需要 XUNJIAN_TEST_REDIS_URL 和 XUNJIAN_TEST_PG_URL（./run-tests 会启动 redis-server 和 PostgreSQL）",
)

# The demo's sources that need no browser (rendering is not what scale-out is about).
PLAIN_SOURCES = [s["name"] for s in tomllib.loads(SOURCES_FILE.read_text(encoding="utf-8"))["source"]
                 if not s.get("render")]


def _crawl_args(db_url: str, names: list[str]) -> list[str]:
    args = [sys.executable, "-m", "crawler.cli", "crawl", "--sources", str(SOURCES_FILE), "--db", db_url]
    for name in names:
        args += ["--source", name]
    return args


def _fetches(log: Path) -> Counter:
    counts: Counter = Counter()
    for line in log.read_text(encoding="utf-8").splitlines():
        method, path, status = line.split(" ")
        counts[(method, path.split("?")[0] if path.startswith("/robots.txt") else path, status)] += 1
    return counts


def _lead_set(db_url: str) -> set[tuple[frozenset, frozenset]]:
    result = run_cli("leads", "--all", "--format", "json", "--db", db_url)
    assert result.code == 0, result.err
    # Paths, not URLs: each run has its own demo server on its own port.
    return {(frozenset(urlsplit(u).path for u in lead["urls"]), frozenset(lead["categories"]))
            for lead in json.loads(result.out)}


def _screenshot_paths(db_url: str) -> set[str]:
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            urls = connection.execute(text(
                "SELECT p.url FROM evidence e JOIN snapshots s ON s.id = e.snapshot_id "
                "JOIN pages p ON p.id = s.page_id WHERE e.kind = 'screenshot'"
            )).scalars()
            return {urlsplit(url).path for url in urls}
    finally:
        engine.dispose()


def _redis_keys(pattern: str) -> list[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        return sorted(k.decode() for k in client.scan_iter(match=pattern))
    finally:
        client.close()


def _redis_hash(key: str) -> dict[str, str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        return {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
    finally:
        client.close()


@pytest.fixture
def schemas():
    with ExitStack() as stack:
        yield lambda tag: stack.enter_context(pg_schema_url(f"xunjian_scaleout_{tag}"))


def _scraped(data_dir: Path) -> int:
    """Pages this process scraped, from the stats Scrapy dumps into its log."""
    found = re.findall(r"'item_scraped_count': (\d+)", "".join(
        p.read_text(encoding="utf-8", errors="replace") for p in (data_dir / "logs").glob("*.log")))
    return sum(int(n) for n in found)


def _crawl_with_log(tmp_path: Path, tag: str, db_url: str, processes: int, run_label: str | None,
                    names: list[str] = PLAIN_SOURCES):
    from crawler.demo.server import start_demo_server

    # As in a deployment: the shared database is migrated once, before the workers start (two
    # processes migrating the same fresh database at the same moment would race).
    upgraded = run_cli("db", "upgrade", "--db", db_url)
    assert upgraded.code == 0, upgraded.err
    log = tmp_path / f"access-{tag}.log"
    server = start_demo_server(access_log=log)
    env = {**os.environ, "XUNJIAN_DEMO_URL": server.url, "COLUMNS": "200"}
    env.pop("XUNJIAN_REDIS_URL", None)
    if run_label is not None:
        env.update({"XUNJIAN_REDIS_URL": REDIS_URL, "XUNJIAN_REDIS_RUN": run_label})
    try:
        procs = []
        for i in range(processes):
            proc_env = {**env, "XUNJIAN_DATA_DIR": str(tmp_path / f"data-{tag}-{i}")}
            procs.append(subprocess.Popen(_crawl_args(db_url, names), cwd=ROOT, env=proc_env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        outputs = [p.communicate(timeout=240) for p in procs]
    finally:
        server.stop()
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, f"crawl exited {proc.returncode}:\n{out}\n{err}"
    return _fetches(log), outputs


@needs_services
def test_two_processes_share_one_frontier(tmp_path: Path, schemas, answer_key) -> None:
    run_label = f"test-{uuid.uuid4().hex[:8]}"
    shared_db = schemas("two")
    single_db = schemas("one")

    shared, outputs = _crawl_with_log(tmp_path, "two", shared_db, processes=2, run_label=run_label)
    single, _ = _crawl_with_log(tmp_path, "one", single_db, processes=1, run_label=None)

    # robots.txt at most once per crawler (each process runs one crawler per source, each with its
    # own robots.txt cache).
    robots = sum(n for (m, path, _), n in shared.items() if path == "/robots.txt")
    assert 1 <= robots <= 2 * len(PLAIN_SOURCES)
    # Neither process went where robots.txt forbids (not even a worker whose first batch from the shared
    # queue held such a page while its robots.txt was still on the way).
    forbidden = set(answer_key.disallowed)
    assert forbidden
    assert not {path for (_, path, _) in shared} & forbidden

    # Every page fetched exactly once by the crawlers, flagged ones included: the evidence screenshot
    # is rendered from the bytes the crawler received, never a second visit.
    shots = _screenshot_paths(shared_db)
    assert shots
    ok_pages = {p: n for (m, p, status), n in shared.items()
                if status == "200" and p != "/robots.txt" and not p.startswith("/static/")}
    assert len(ok_pages) > 50
    wrong = {p: n for p, n in ok_pages.items() if n != 1}
    assert not wrong, f"pages fetched a wrong number of times: {sorted(wrong.items())[:10]}"

    # Same pages (and the same retries of failing ones) as one process crawling alone.
    def without_robots(counts: Counter) -> Counter:
        return Counter({k: n for k, n in counts.items() if k[1] != "/robots.txt"})

    assert without_robots(shared) == without_robots(single)

    # Both processes stopped on their own once the frontier was empty, and together they did the work.
    # (How the pages split between them depends on timing: on a loaded machine one may take them all.)
    assert sum(_scraped(tmp_path / f"data-two-{i}") for i in range(2)) > 0
    assert all("完成" in out + err for out, err in outputs)

    # Same leads in the shared database as in the single-process one.
    shared_leads = _lead_set(shared_db)
    assert shared_leads
    assert shared_leads == _lead_set(single_db)

    # The finished frontier was cleared; the labelled run left only its "done" markers.
    left = _redis_keys(f"xunjian:{run_label}:*")
    assert left == sorted(f"xunjian:{run_label}:{name}:done" for name in PLAIN_SOURCES)


@needs_services
def test_late_process_does_not_recrawl_a_finished_run(tmp_path: Path, schemas) -> None:
    run_label = f"test-{uuid.uuid4().hex[:8]}"
    db_url = schemas("late")
    first, _ = _crawl_with_log(tmp_path, "first", db_url, processes=1, run_label=run_label, names=["huizhi"])
    assert sum(n for k, n in first.items() if k[1] != "/robots.txt") >= 3
    late, outputs = _crawl_with_log(tmp_path, "late", db_url, processes=1, run_label=run_label, names=["huizhi"])
    fetched_pages = {k: n for k, n in late.items() if k[1] != "/robots.txt"}
    assert fetched_pages == {}
    out, err = outputs[0]
    assert "共享队列的本轮已由其他进程抓完" in out + err  # the summary names why, in Chinese

    # The scheduler's entry point joining the finished run: a normal exit, and the source stays
    # healthy (the run that did nothing is not judged; the runs that crawled are).
    from crawler.demo.server import start_demo_server
    from crawler.health import source_health
    from storage.db import open_database

    server = start_demo_server()
    try:
        env = {**os.environ, "XUNJIAN_DEMO_URL": server.url, "XUNJIAN_REDIS_URL": REDIS_URL,
               "XUNJIAN_REDIS_RUN": run_label, "XUNJIAN_DATA_DIR": str(tmp_path / "data-job")}
        job = subprocess.run([sys.executable, "-m", "crawler.crawl_job", "--source", "huizhi", "--sources",
                              str(SOURCES_FILE), "--db", db_url], cwd=ROOT, env=env, text=True,
                             capture_output=True, timeout=240, check=False)
    finally:
        server.stop()
    assert job.returncode == 0, job.stderr
    assert "redis_frontier_done" in job.stderr
    database = open_database(db_url)
    try:
        health = source_health(database, "huizhi")
    finally:
        database.dispose()
    assert health.healthy, health.reason
    assert health.run is not None and health.run.finish_reason == "finished" and health.run.pages >= 3


# A worker with an empty queue while a peer is still busy. The peer is its heartbeat in Redis (what a
# real peer writes); when the worker first goes idle the "peer" queues a page, as a peer that found a
# link would, and it marks itself done once the worker has fetched that page.
_IDLE_WORKER = r"""
import json, sys, time
import redis, scrapy
from scrapy import signals
from scrapy.crawler import CrawlerProcess
from scrapy_redis.queue import PriorityQueue
from crawler.redis_mode import redis_overlay

redis_url, run, page_url = sys.argv[1:4]
prefix = f"xunjian:{run}:idle-worker"
client = redis.Redis.from_url(redis_url)
client.hset(f"{prefix}:workers", "peer", f"busy:{time.time():.3f}")
fetched, idle = [], []


class Worker(scrapy.Spider):
    name = "idle-worker"

    async def start(self):
        return
        yield

    def parse(self, response):
        fetched.append(response.url)
        client.hdel(f"{prefix}:workers", "peer")


def on_idle(spider):
    idle.append(time.monotonic())
    if len(idle) == 1:
        PriorityQueue(client, spider, f"{prefix}:requests").push(scrapy.Request(page_url))


process = CrawlerProcess({**redis_overlay(redis_url, run), "ROBOTSTXT_OBEY": False, "LOG_LEVEL": "INFO",
                          "TELNETCONSOLE_ENABLED": False,
                          "EXTENSIONS": {"scrapy.extensions.telnet.TelnetConsole": None}})
crawler = process.create_crawler(Worker)
crawler.signals.connect(on_idle, signal=signals.spider_idle)
process.crawl(crawler)
process.start()
stats = crawler.stats.get_stats()
print(json.dumps({"fetched": fetched, "pickups": stats.get("xunjian/redis/idle_pickups", 0),
                  "reason": stats.get("finish_reason")}))
"""


@needs_services
def test_idle_worker_takes_work_a_peer_queues_without_waiting_for_scrapys_idle_check(tmp_path: Path) -> None:
    from crawler.demo.server import start_demo_server

    run_label = f"test-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "access.log"
    server = start_demo_server(access_log=log)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("XUNJIAN_REDIS")}
        proc = subprocess.run([sys.executable, "-c", _IDLE_WORKER, REDIS_URL, run_label,
                               f"{server.url}/board/list/1.html"], cwd=ROOT, env=env, text=True,
                              capture_output=True, timeout=120, check=False)
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # The page the peer queued was fetched once, taken by the idle poll (without it the worker would
    # have waited for Scrapy's next idle check and taken it through the scheduler: no pickup counted).
    assert [urlsplit(u).path for u in result["fetched"]] == ["/board/list/1.html"]
    assert result["pickups"] == 1
    assert result["reason"] == "finished"
    assert _fetches(log) == Counter({("GET", "/board/list/1.html", "200"): 1})
    # Nothing was left behind in the queue, and the last worker out cleared the frontier.
    assert _redis_keys(f"xunjian:{run_label}:idle-worker:requests") == []


class _StateAtPop:
    """A scrapy-redis queue (SCHEDULER_QUEUE_CLASS) that notes what the popping worker's heartbeat
    said at the moment of each pop."""

    states: ClassVar[list[str]] = []

    def __new__(cls, *args, **kwargs):
        from scrapy_redis.queue import PriorityQueue

        class Queue(PriorityQueue):
            def pop(self, timeout=0):
                workers = self.server.hgetall(self.key.rsplit(":", 1)[0] + ":workers")
                cls.states.extend(v.decode().partition(":")[0] for v in workers.values())
                return super().pop(timeout)

        return Queue(*args, **kwargs)


@pytest.mark.skipif(not REDIS_URL, reason="需要 XUNJIAN_TEST_REDIS_URL（./run-tests 会启动 redis-server）")
def test_an_idle_worker_says_busy_before_it_takes_a_request() -> None:
    """Peers close the frontier when the queue is empty and nobody is busy: a worker taking the last
    request must already be "busy" when the request leaves the queue."""
    import scrapy
    from scrapy.settings import Settings

    from crawler.redis_mode import SharedFrontierScheduler, redis_overlay

    run_label = f"test-{uuid.uuid4().hex[:8]}"
    settings = Settings({**redis_overlay(REDIS_URL, run_label),
                         "SCHEDULER_QUEUE_CLASS": f"{__name__}._StateAtPop"})
    spider = scrapy.Spider(name="pop-order")
    spider.settings = settings
    scheduler = SharedFrontierScheduler.from_settings(settings)
    scheduler.open(spider)
    try:
        scheduler.on_idle(spider)  # nothing queued, no peer: idle, ready to close
        _StateAtPop.states.clear()
        assert scheduler.next_request() is None  # asking an empty queue does not make it "busy"
        beats = _redis_hash(f"xunjian:{run_label}:pop-order:workers")
        assert [v.partition(":")[0] for v in beats.values()] == ["idle"]
        _StateAtPop.states.clear()
        assert scheduler.enqueue_request(scrapy.Request("http://127.0.0.1:9/a"))
        request = scheduler.next_request()
        assert request is not None and request.url == "http://127.0.0.1:9/a"
        assert _StateAtPop.states == ["busy"]
    finally:
        scheduler.close("finished")
    assert _redis_keys(f"xunjian:{run_label}:pop-order:requests") == []


@pytest.mark.parametrize(("name", "value"), [("XUNJIAN_REDIS_IDLE_POLL", "0"), ("XUNJIAN_REDIS_IDLE_POLL", "soon"),
                                             ("XUNJIAN_REDIS_KEY_TTL", "-1")])
def test_bad_redis_setting_is_a_one_line_error(tmp_path: Path, name: str, value: str) -> None:
    env = {"XUNJIAN_REDIS_URL": "redis://127.0.0.1:9/0", name: value, "XUNJIAN_DEMO_URL": "http://127.0.0.1:9",
           "XUNJIAN_DATA_DIR": str(tmp_path / "data")}
    result = run_cli("crawl", "--sources", str(SOURCES_FILE), "--source", "huizhi",
                     "--db", f"sqlite:///{tmp_path / 'x.db'}", env=env)
    assert result.code == 1
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and name in lines[0] and repr(value) in lines[0], result.err


def test_unreachable_redis_is_a_one_line_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    env = {"XUNJIAN_REDIS_URL": url, "XUNJIAN_DEMO_URL": "http://127.0.0.1:9",
           "XUNJIAN_DATA_DIR": str(tmp_path / "data")}
    result = run_cli("crawl", "--sources", str(SOURCES_FILE), "--source", "huizhi",
                     "--db", f"sqlite:///{tmp_path / 'x.db'}", env=env)
    assert result.code == 1
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "无法连接 Redis" in lines[0] and url in lines[0], result.err
