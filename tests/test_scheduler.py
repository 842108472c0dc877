"""The scheduler for real: `xunjian schedule` in a subprocess, real SQLite, real crawl subprocesses.

Most tests point XUNJIAN_CRAWL_COMMAND at a tiny script (``FAKE_CRAWL``) that records every start,
end and signal it receives as JSON lines; one test runs the real crawl_job against the demo site.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import ROOT, run_cli

SHANGHAI = ZoneInfo("Asia/Shanghai")

FAKE_CRAWL = textwrap.dedent("""
    import json, os, signal, sys, time
    log = os.environ["FAKE_LOG"]
    source = sys.argv[sys.argv.index("--source") + 1]
    def record(event):
        with open(log, "a") as f:
            f.write(json.dumps({"event": event, "source": source, "pid": os.getpid(),
                                "redis_run": os.environ.get("XUNJIAN_REDIS_RUN"),
                                "t": time.monotonic_ns()}) + "\\n")
    stop = []
    def on_term(signum, frame):
        record("sigterm")
        stop.append(1)
    signal.signal(signal.SIGTERM, on_term)
    record("start")
    deadline = time.monotonic() + float(os.environ.get("FAKE_SLEEP", "0"))
    while time.monotonic() < deadline:
        if stop and os.environ.get("FAKE_IGNORE_TERM") != "1":
            break
        time.sleep(0.05)
    record("end")
    sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
""")


def sources_file(path: Path, schedules: dict[str, str]) -> Path:
    blocks = [
        f'[[source]]\nname = "{name}"\nkind = "site"\nstart_urls = ["http://127.0.0.1:9/{name}/"]\n'
        f'schedule = "{cron}"\n'
        for name, cron in schedules.items()
    ]
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def events(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


class Scheduler:
    def __init__(self, tmp: Path, sources: Path, env: dict | None = None):
        self.tmp, self.sources = tmp, sources
        self.db_url = f"sqlite:///{tmp / 'x.db'}"
        self.data = tmp / "data"
        self.fake_log = tmp / "fake.jsonl"
        script = tmp / "fake_crawl.py"
        script.write_text(FAKE_CRAWL)
        self.env = {**os.environ, "XUNJIAN_CRAWL_COMMAND": f"{sys.executable} {script}",
                    "FAKE_LOG": str(self.fake_log), "XUNJIAN_DAILY_CRON": "off", "XUNJIAN_CANARY_CRON": "off",
                    **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self) -> Scheduler:
        self.out = open(self.tmp / "scheduler.out", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crawler.cli", "schedule", "--sources", str(self.sources),
             "--db", self.db_url, "--data-dir", str(self.data)],
            cwd=ROOT, env=self.env, stdout=self.out, stderr=subprocess.STDOUT)
        wait_for(lambda: (self.data / "scheduler.pid").exists() and "调度器已启动" in self.output(),
                 what="scheduler start")
        return self

    def output(self) -> str:
        path = self.tmp / "scheduler.out"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=120)
        self.out.close()
        return code

    def jobs(self) -> dict:
        from crawler.db import database_for
        from storage.runs import next_run_times

        return next_run_times(database_for(self.db_url))


@pytest.fixture
def make_scheduler(tmp_path):
    started: list[Scheduler] = []

    def make(schedules: dict[str, str], env: dict | None = None) -> Scheduler:
        s = Scheduler(tmp_path, sources_file(tmp_path / "sources.toml", schedules), env)
        started.append(s)
        return s

    yield make
    for s in started:
        if s.proc is not None and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def test_schedule_fires_real_crawl_of_demo_site(tmp_path, demo_site):
    from crawler.daily_file import daily_path
    from crawler.db import database_for
    from crawler.demo import SOURCES_FILE
    from storage.runs import list_runs
    from storage.views import daily_list

    s = Scheduler(tmp_path, SOURCES_FILE, {"XUNJIAN_SCHEDULE_INTERVAL": "1", "XUNJIAN_DEMO_URL": demo_site.url})
    del s.env["XUNJIAN_CRAWL_COMMAND"]
    s.sources = tmp_path / "sources.toml"
    text = SOURCES_FILE.read_text(encoding="utf-8").split("# 慧智教育")[0]  # the board source only
    s.sources.write_text(text, encoding="utf-8")
    s.start()
    db = database_for(s.db_url)
    wait_for(lambda: any(r.finished_at for r in list_runs(db, "board")), timeout=120, what="a finished board run")
    status = run_cli("status", "--sources", str(s.sources), "--db", s.db_url, "--data-dir", str(s.data),
                     env={"XUNJIAN_DEMO_URL": demo_site.url})
    assert status.code == 0 and "健康" in status.out and "异常" not in status.out
    assert s.stop() == 0
    first = [r for r in list_runs(db, "board") if r.finished_at][-1]
    assert first.finish_reason == "finished" and first.pages > 0 and first.new_leads > 0
    runs = run_cli("runs", "--source", "board", "--db", s.db_url)
    assert runs.code == 0 and "board" in runs.out and "完成" in runs.out
    # The daily job, as the scheduler runs it (crawler.scheduler:run_daily_list).
    import crawler.scheduler as scheduler
    from openpyxl import load_workbook

    scheduler._context = scheduler.Context(s.sources, s.db_url, s.data)
    try:
        path = Path(scheduler.run_daily_list())
    finally:
        scheduler._context = None
    assert path == daily_path(s.data, datetime.now(SHANGHAI).date())

    sheet = load_workbook(path).worksheets[0]
    assert sheet.max_row - 1 == len(daily_list(db).leads) > 0


def test_short_interval_fires_repeatedly_one_at_a_time(make_scheduler):
    s = make_scheduler({"alpha": "0 6 * * *"}, {"XUNJIAN_SCHEDULE_INTERVAL": "0.3", "FAKE_SLEEP": "1"}).start()
    wait_for(lambda: sum(e["event"] == "end" for e in events(s.fake_log)) >= 3, what="three runs")
    assert s.stop() == 0
    log = [e for e in events(s.fake_log) if e["event"] in ("start", "end")]
    # Strictly alternating start/end of the same process: never two crawls of the source at once.
    for first, second in zip(log, log[1:]):
        assert first["event"] != second["event"]
        if first["event"] == "start":
            assert first["pid"] == second["pid"]
    assert "maximum number of running instances" in s.output()


def _set_next_run(db_url: str, job_id: str, when: datetime) -> None:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    store = SQLAlchemyJobStore(url=db_url)
    store.start(BackgroundScheduler(timezone="Asia/Shanghai"), "default")
    job = store.lookup_job(job_id)
    job.next_run_time = when
    store.update_job(job)
    store.shutdown()


def _latest_six_oclock() -> str:
    now = datetime.now(SHANGHAI)
    fire = now.replace(hour=6, minute=0, second=0, microsecond=0)
    return (fire if fire <= now else fire - timedelta(days=1)).strftime("alpha@%Y%m%dT%H%M%z")


def test_missed_runs_coalesce_into_one_catch_up_run(make_scheduler):
    # Redis mode (the fake crawl never connects): the catch-up run's label is the latest missed fire
    # time, and the scheduler's label replaces the fixed one of its own environment.
    env = {"XUNJIAN_REDIS_URL": "redis://127.0.0.1:9/0", "XUNJIAN_REDIS_RUN": "fixed-global"}
    s = make_scheduler({"alpha": "0 6 * * *", "beta": "0 7 * * *"}, env).start()
    wait_for(lambda: "crawl:alpha" in s.jobs(), what="stored job")
    assert s.stop() == 0
    assert events(s.fake_log) == []
    # Three days of downtime: the 06:00 runs of three days were missed.
    three_days_ago = datetime.now(SHANGHAI).replace(hour=6, minute=0, second=0, microsecond=0) - timedelta(days=3)
    _set_next_run(s.db_url, "crawl:alpha", three_days_ago)
    labels = {_latest_six_oclock()}
    s.start()
    wait_for(lambda: any(e["event"] == "end" for e in events(s.fake_log)), what="catch-up run")
    wait_for(lambda: s.jobs()["crawl:alpha"] > datetime.now(SHANGHAI), what="next run in the future")
    assert s.stop() == 0
    labels.add(_latest_six_oclock())  # in case 06:00 passed while the test ran
    starts = [e for e in events(s.fake_log) if e["event"] == "start"]
    assert [e["source"] for e in starts] == ["alpha"]
    assert starts[0]["redis_run"] in labels
    assert "was missed" not in s.output()


def test_sighup_and_reload_command_apply_new_changed_and_removed_schedules(make_scheduler):
    s = make_scheduler({"alpha": "0 6 * * *", "beta": "0 7 * * *"}).start()
    wait_for(lambda: {"crawl:alpha", "crawl:beta"} <= set(s.jobs()), what="initial jobs")
    sources_file(s.sources, {"alpha": "30 9 * * *", "gamma": "0 8 * * *"})
    s.proc.send_signal(signal.SIGHUP)

    def applied():
        jobs = s.jobs()
        return ("crawl:beta" not in jobs and "crawl:gamma" in jobs
                and jobs["crawl:alpha"].astimezone(SHANGHAI).strftime("%H:%M") == "09:30")

    wait_for(applied, what="SIGHUP reload")
    assert s.jobs()["crawl:gamma"].astimezone(SHANGHAI).strftime("%H:%M") == "08:00"
    sources_file(s.sources, {"alpha": "30 9 * * *"})
    reload = run_cli("schedule", "reload", "--data-dir", str(s.data))
    assert reload.code == 0 and str(s.proc.pid) in reload.out
    wait_for(lambda: set(s.jobs()) == {"crawl:alpha"}, what="reload command")
    status = run_cli("status", "--sources", str(s.sources), "--db", s.db_url)
    assert status.code == 0 and "09:30" in status.out
    assert s.stop() == 0
    assert events(s.fake_log) == []


def test_sigterm_gives_running_crawl_exactly_one_sigterm(make_scheduler):
    s = make_scheduler({"alpha": "0 6 * * *"}, {"XUNJIAN_SCHEDULE_INTERVAL": "0.5", "FAKE_SLEEP": "60"}).start()
    wait_for(lambda: any(e["event"] == "start" for e in events(s.fake_log)), what="crawl start")
    assert s.stop() == 0
    log = events(s.fake_log)
    assert [e["event"] for e in log] == ["start", "sigterm", "end"]
    assert "SIGKILL" not in s.output()
    assert not (s.data / "scheduler.pid").exists()


def test_crawl_ignoring_sigterm_is_killed_after_the_timeout(make_scheduler):
    env = {"XUNJIAN_SCHEDULE_INTERVAL": "0.5", "FAKE_SLEEP": "60", "FAKE_IGNORE_TERM": "1",
           "XUNJIAN_STOP_TIMEOUT": "1"}
    s = make_scheduler({"alpha": "0 6 * * *"}, env).start()
    wait_for(lambda: any(e["event"] == "start" for e in events(s.fake_log)), what="crawl start")
    assert s.stop() == 0
    assert [e["event"] for e in events(s.fake_log)] == ["start", "sigterm"]
    assert "SIGKILL" in s.output()


def test_second_scheduler_and_reload_without_scheduler_are_refused(make_scheduler, tmp_path):
    reload = run_cli("schedule", "reload", "--data-dir", str(tmp_path / "nowhere"))
    assert reload.code == 1 and reload.err.startswith("错误：") and "没有正在运行的调度器" in reload.err
    s = make_scheduler({"alpha": "0 6 * * *"}).start()
    second = run_cli("schedule", "--sources", str(s.sources), "--db", s.db_url, "--data-dir", str(s.data))
    assert second.code == 1 and "调度器已在运行" in second.err
    assert s.stop() == 0
