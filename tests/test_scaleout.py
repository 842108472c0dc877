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

    # Every page fetched exactly once by the crawlers; a flagged page once more by chromium for its
    # evidence screenshot (taken once: the shared database knows it has been captured).
    shots = _screenshot_paths(shared_db)
    assert shots
    ok_pages = {p: n for (m, p, status), n in shared.items()
                if status == "200" and p != "/robots.txt" and not p.startswith("/static/")}
    assert len(ok_pages) > 50
    wrong = {p: n for p, n in ok_pages.items() if n != 1 + (p in shots)}
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
