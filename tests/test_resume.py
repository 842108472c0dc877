"""Crash safety and resume, for real: crawl_job subprocesses against the demo site, stopped mid-way.

An uninterrupted crawl of the demo board is the reference. A crawl stopped by one SIGTERM keeps a
complete JOBDIR, and the next crawl_job resumes it: together they fetch every ad exactly once and store
exactly the reference's pages, findings and leads. A crawl killed with SIGKILL leaves a consistent
database (only whole pages), its JOBDIR is not resumed, and the next run completes the crawl.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crawler import jobdir
from storage.db import open_database
from storage.models import CrawlRun, Evidence, Finding, Lead, Page, Snapshot
from tests.conftest import board_source

ROOT = Path(__file__).resolve().parent.parent



@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from crawler.demo.server import start_demo_server

    base = tmp_path_factory.mktemp("resume-site")
    log = base / "access.log"
    server = start_demo_server(access_log=log)
    try:
        yield server, log
    finally:
        server.stop()


def job_env(site_url: str, data: Path) -> dict:
    return {**os.environ, "XUNJIAN_DEMO_URL": site_url, "XUNJIAN_DATA_DIR": str(data)}


def start_job(tmp: Path, site_url: str, delay: float) -> subprocess.Popen:
    sources = tmp / f"sources-{delay}.toml"
    sources.write_text(board_source(delay=delay, extra="concurrency = 1"), encoding="utf-8")
    cmd = [sys.executable, "-m", "crawler.crawl_job", "--source", "board", "--sources", str(sources),
           "--db", f"sqlite:///{tmp / 'xunjian.db'}", "--data-dir", str(tmp / "data")]
    return subprocess.Popen(cmd, cwd=ROOT, env=job_env(site_url, tmp / "data"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=240)
    return proc.returncode, err


def ad_fetches(log: Path, start: int) -> list[str]:
    lines = log.read_text(encoding="utf-8").splitlines()[start:]
    return [line.split()[1] for line in lines if line.startswith("GET /board/ad/") and line.endswith(" 200")]


def log_length(log: Path) -> int:
    return len(log.read_text(encoding="utf-8").splitlines()) if log.exists() else 0


def wait_for_fetches(log: Path, start: int, count: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while len(ad_fetches(log, start)) < count:
        assert proc.poll() is None, f"crawl ended before {count} ads were fetched: {proc.communicate()}"
        assert time.monotonic() < deadline, "the crawl never got going"
        time.sleep(0.1)


def stop_midway(tmp: Path, site_url: str, log: Path) -> tuple[str, Path]:
    """Start a crawl job, send it ONE SIGTERM after a few ad pages; (its stderr, the JOBDIR it kept)."""
    start = log_length(log)
    proc = start_job(tmp, site_url, 0.3)
    wait_for_fetches(log, start, 6, proc)
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 3, err
    [kept] = [p for p in jobdir.source_jobs(tmp / "data", "board").iterdir() if p.name != jobdir.BROKEN]
    return err, kept


def contents(db_file: Path) -> dict:
    """What a crawl left in the database, in terms that do not depend on row ids or times."""
    db = open_database(f"sqlite:///{db_file}", upgrade=False)
    try:
        with db.session() as session:
            pages = set(session.scalars(select(Page.url)))
            findings = Counter(tuple(row) for row in session.execute(
                select(Page.url, Finding.rule, Finding.start, Finding.end)
                .join(Snapshot, Snapshot.page_id == Page.id).join(Finding, Finding.snapshot_id == Snapshot.id)
            ))
            leads = set(session.scalars(select(Lead.key)))
            snapshots = session.scalar(select(func.count(Snapshot.id)))
    finally:
        db.dispose()
    return {"pages": pages, "findings": findings, "leads": leads, "snapshots": snapshots}


def without_fetches(reference: dict) -> dict:
    return {k: v for k, v in reference.items() if k != "fetches"}


def check_consistent(db_file: Path, data: Path) -> None:
    """No half-written page: every flagged snapshot has its findings and their lead, no orphan rows."""
    db = open_database(f"sqlite:///{db_file}", upgrade=False)
    try:
        with db.session() as session:
            for snap in session.scalars(select(Snapshot)):
                count = session.scalar(select(func.count(Finding.id)).where(Finding.snapshot_id == snap.id))
                assert bool(count) == bool(snap.categories), f"snapshot {snap.id} without its findings"
            assert not session.scalars(select(Finding.id).where(
                Finding.lead_id.is_not(None), Finding.lead_id.not_in(select(Lead.id)))).all()
            assert not session.scalars(select(Finding.id).where(Finding.snapshot_id.not_in(select(Snapshot.id)))).all()
            assert not session.scalars(select(Snapshot.id).where(Snapshot.page_id.not_in(select(Page.id)))).all()
            assert not session.scalars(select(Page.id).where(Page.last_snapshot_id.is_(None))).all()
            for lead in session.scalars(select(Lead)):
                assert session.scalar(select(func.count(Finding.id)).where(Finding.lead_id == lead.id)), lead.key
            for row in session.scalars(select(Evidence)):
                assert (data / row.path).is_file(), row.path
    finally:
        db.dispose()


@pytest.fixture(scope="module")
def reference(site, tmp_path_factory):
    server, log = site
    tmp = tmp_path_factory.mktemp("reference")
    start = log_length(log)
    code, err = finish(start_job(tmp, server.url, 0.0))
    assert code == 0, err
    result = contents(tmp / "xunjian.db")
    assert len(result["pages"]) >= 20 and result["leads"], result
    # Fetches of each ad (the crawler's, plus the browser's for the screenshot of a flagged one).
    result["fetches"] = Counter(ad_fetches(log, start))
    return result


def test_sigterm_then_resume_equals_uninterrupted_run(site, reference, tmp_path):
    server, log = site
    start = log_length(log)
    err, kept = stop_midway(tmp_path, server.url, log)
    assert "已中断" in err
    assert jobdir.is_resumable(kept)
    partial = contents(tmp_path / "xunjian.db")
    assert 0 < len(partial["pages"]) < len(reference["pages"])
    # The stopped run is recorded as resumable, so the source is not called 异常 for it.
    from crawler.health import source_health

    db = open_database(f"sqlite:///{tmp_path / 'xunjian.db'}", upgrade=False)
    stopped = source_health(db, "board")
    db.dispose()
    assert stopped.run.finish_reason == "shutdown" and stopped.run.stats.get("xunjian/jobdir") == 1
    assert stopped.healthy and "断点继续" in stopped.reason

    code, err = finish(start_job(tmp_path, server.url, 0.0))
    assert code == 0, err
    assert "续抓" in err
    assert contents(tmp_path / "xunjian.db") == without_fetches(reference)
    # Nothing fetched (or captured) twice across the two runs: the same requests as one whole run.
    assert Counter(ad_fetches(log, start)) == reference["fetches"]
    assert not kept.exists()  # a finished run removes its JOBDIR
    db = open_database(f"sqlite:///{tmp_path / 'xunjian.db'}", upgrade=False)
    with db.session() as session:
        runs = list(session.scalars(select(CrawlRun).order_by(CrawlRun.id)))
    resumed = source_health(db, "board")
    db.dispose()
    assert [r.finish_reason for r in runs] == ["shutdown", "finished"]
    assert runs[1].stats["xunjian/resumed_from"] == runs[0].id and "xunjian/resumed_from" not in runs[0].stats
    assert resumed.healthy and resumed.run.id == runs[1].id


def test_sigkill_leaves_consistent_database_and_next_run_completes(site, reference, tmp_path):
    server, log = site
    start = log_length(log)
    proc = start_job(tmp_path, server.url, 0.3)
    wait_for_fetches(log, start, 12, proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    check_consistent(tmp_path / "xunjian.db", tmp_path / "data")
    partial = contents(tmp_path / "xunjian.db")
    assert len(partial["pages"]) < len(reference["pages"])
    # Every page that made it into the database is whole: the same findings as in the reference.
    for (url, *rest), count in partial["findings"].items():
        assert reference["findings"][(url, *rest)] == count
    [killed] = [p for p in jobdir.source_jobs(tmp_path / "data", "board").iterdir() if p.name != jobdir.BROKEN]
    assert not jobdir.is_resumable(killed)  # the process never closed Scrapy's queue

    code, err = finish(start_job(tmp_path, server.url, 0.0))
    assert code == 0, err
    assert "续抓" not in err  # started fresh
    assert (jobdir.source_jobs(tmp_path / "data", "board") / jobdir.BROKEN / killed.name).is_dir()
    check_consistent(tmp_path / "xunjian.db", tmp_path / "data")
    assert contents(tmp_path / "xunjian.db") == without_fetches(reference)
    db = open_database(f"sqlite:///{tmp_path / 'xunjian.db'}", upgrade=False)
    with db.session() as session:
        runs = list(session.scalars(select(CrawlRun).order_by(CrawlRun.id)))
    db.dispose()
    assert [r.finish_reason for r in runs] == ["killed", "finished"]
    assert all(r.finished_at is not None for r in runs)


def test_incomplete_jobdir_is_discarded(tmp_path):
    root = jobdir.source_jobs(tmp_path, "board")
    broken = root / "20200101T000000000000Z-1"
    (broken / "requests.queue").mkdir(parents=True)
    jobdir.write_marker(broken, state=jobdir.INTERRUPTED, pid=1, run_id=7)
    # No spider.state and no queue index: the run never closed cleanly.
    job = jobdir.prepare(tmp_path, "board")
    assert not job.resumed and job.path != broken
    assert job.discarded == (broken.name,)
    assert (root / jobdir.BROKEN / broken.name).is_dir()
    assert job.path.is_dir() and jobdir.read_marker(job.path)["state"] == jobdir.RUNNING


def test_exit_codes_for_bad_input_and_failed_work(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sources = tmp_path / "sources.toml"
    sources.write_text(f'[[source]]\nname = "gone"\nkind = "site"\nstart_urls = ["http://127.0.0.1:{port}/"]\n'
                       'allow_private = true\n',
                       encoding="utf-8")
    base = [sys.executable, "-m", "crawler.crawl_job", "--sources", str(sources),
            "--db", f"sqlite:///{tmp_path / 'xunjian.db'}", "--data-dir", str(tmp_path / "data")]
    env = job_env("http://127.0.0.1:9", tmp_path / "data")
    bad = subprocess.run(base + ["--source", "nope"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and '没有名为 "nope" 的来源' in bad.stderr and bad.stderr.count("\n") == 1
    usage = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and "--source" in usage.stderr
    failed = subprocess.run(base + ["--source", "gone"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "起始网址无法访问" in failed.stderr, failed.stderr
    db = open_database(f"sqlite:///{tmp_path / 'xunjian.db'}", upgrade=False)
    with db.session() as session:
        [run] = session.scalars(select(CrawlRun))
    db.dispose()
    assert run.finish_reason == "start_unreachable" and run.finished_at is not None
    assert list((tmp_path / "data" / "logs").glob("crawl-gone-*.log"))
