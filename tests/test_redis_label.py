"""The Redis run label: one per scheduled fire time, set by the scheduler, kept by a resumed crawl_job.

The label tests use APScheduler's real triggers; the scheduler test runs `xunjian schedule` with the
fake crawl of tests/test_scheduler.py (which records the XUNJIAN_REDIS_RUN it was given); the resume
test runs the real crawl_job against the demo site with a real redis-server (XUNJIAN_TEST_REDIS_URL,
exported by ./run-tests; skipped without it).
"""

from __future__ import annotations

import os
import re
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from crawler import jobdir
from crawler.fire_label import last_fire_time, run_label
from tests.test_resume import (  # noqa: F401 - site and reference are fixtures
    ad_fetches, finish, log_length, reference, site, start_job, stop_midway)
from tests.test_scheduler import events, make_scheduler, wait_for  # noqa: F401 - make_scheduler is a fixture

SHANGHAI = ZoneInfo("Asia/Shanghai")
WEEK = 7 * 86400
REDIS_URL = os.environ.get("XUNJIAN_TEST_REDIS_URL")


def at(text: str, tz=SHANGHAI) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def cron(expression: str) -> CronTrigger:
    return CronTrigger.from_crontab(expression, timezone="Asia/Shanghai")


def test_label_is_the_latest_cron_fire_time_at_or_before_now():
    daily = cron("0 6 * * *")
    assert run_label("board", daily, at("2026-11-25 07:30"), WEEK) == "board@20261125T0600+0800"
    assert run_label("board", daily, at("2026-11-25 06:00"), WEEK) == "board@20261125T0600+0800"
    assert run_label("board", daily, at("2026-11-25 05:59:59"), WEEK) == "board@20261124T0600+0800"
    every_quarter = cron("*/15 * * * *")
    assert run_label("b", every_quarter, at("2026-11-25 10:44:59"), WEEK) == "b@20261125T1030+0800"


def test_catch_up_after_downtime_takes_the_latest_missed_fire_time():
    # Down from Monday to Thursday 10:00: the daily 06:00 runs of four days were missed.
    assert run_label("board", cron("0 6 * * *"), at("2026-11-26 10:00"), WEEK) == "board@20261126T0600+0800"
    # A weekly Monday 06:00 crawl caught up on Saturday: beyond the 1-hour and 1-day look-backs.
    weekly = cron("0 6 * * mon")
    assert last_fire_time(weekly, at("2026-11-28 09:00"), WEEK) == at("2026-11-23 06:00")
    # Missed by more than the misfire grace: APScheduler would not run it; a label of its own (now).
    assert last_fire_time(weekly, at("2026-11-28 09:00"), 86400) is None
    assert run_label("board", weekly, at("2026-11-28 09:00:05"), 86400) == "board@20261128T090005+0800"


def test_two_machines_firing_the_same_cron_compute_the_same_label():
    # Separate triggers, different clocks' moments after the fire, and "now" in different time zones.
    first = run_label("board", cron("0 6 * * *"), at("2026-11-25 06:00:00.004"), WEEK)
    second = run_label("board", cron("0 6 * * *"), at("2026-11-24 22:03:41", timezone.utc), WEEK)
    assert first == second == "board@20261125T0600+0800"
    # The next fire is another run: a frontier of its own.
    assert run_label("board", cron("0 6 * * *"), at("2026-11-26 06:00:01"), WEEK) != first


def test_interval_trigger_uses_its_own_fire_times():
    start = at("2026-11-25 06:00:00")
    trigger = IntervalTrigger(seconds=30, start_date=start, timezone="Asia/Shanghai")
    assert last_fire_time(trigger, start + timedelta(seconds=95), WEEK) == start + timedelta(seconds=90)
    assert run_label("a", trigger, start + timedelta(seconds=95), WEEK) == "a@20261125T060130+0800"
    assert run_label("a", trigger, start + timedelta(seconds=120), WEEK) == "a@20261125T0602+0800"
    assert last_fire_time(trigger, start - timedelta(seconds=1), WEEK) is None
    fast = IntervalTrigger(seconds=0.25, start_date=start, timezone="Asia/Shanghai")
    assert run_label("a", fast, start + timedelta(seconds=1.3), WEEK) == "a@20261125T060001.250000+0800"


def test_scheduler_gives_each_fire_its_own_label_over_the_environment(make_scheduler):
    env = {"XUNJIAN_SCHEDULE_INTERVAL": "0.5", "XUNJIAN_REDIS_URL": "redis://127.0.0.1:9/0",
           "XUNJIAN_REDIS_RUN": "fixed-global"}
    s = make_scheduler({"alpha": "0 6 * * *"}, env).start()
    wait_for(lambda: sum(e["event"] == "start" for e in events(s.fake_log)) >= 2, what="two runs")
    assert s.stop() == 0
    labels = [e["redis_run"] for e in events(s.fake_log) if e["event"] == "start"]
    assert all(re.fullmatch(r"alpha@\d{8}T\d{4}(\d{2}(\.\d{6})?)?\+0800", label) for label in labels), labels
    assert len(set(labels)) == len(labels)  # a new frontier per fire, never the fixed global label
    assert "Redis 运行标签" in s.output()


def test_without_redis_the_scheduler_leaves_the_environment_alone(make_scheduler):
    env = {"XUNJIAN_SCHEDULE_INTERVAL": "0.5", "XUNJIAN_REDIS_RUN": "kept"}
    s = make_scheduler({"alpha": "0 6 * * *"}, {**env, "XUNJIAN_REDIS_URL": ""}).start()
    wait_for(lambda: any(e["event"] == "start" for e in events(s.fake_log)), what="a run")
    assert s.stop() == 0
    assert {e["redis_run"] for e in events(s.fake_log) if e["event"] == "start"} == {"kept"}


def _redis():
    import redis

    return redis.Redis.from_url(REDIS_URL)


@pytest.mark.skipif(not REDIS_URL, reason="需要 XUNJIAN_TEST_REDIS_URL（./run-tests 会启动 redis-server）")
def test_resumed_crawl_job_continues_the_interrupted_frontier(site, reference, tmp_path, monkeypatch):
    server, log = site
    first_label, second_label = (f"test-{uuid.uuid4().hex[:8]}-{n}" for n in (1, 2))
    monkeypatch.setenv("XUNJIAN_REDIS_URL", REDIS_URL)
    monkeypatch.setenv("XUNJIAN_REDIS_RUN", first_label)
    start = log_length(log)
    err, kept = stop_midway(tmp_path, server.url, log)
    assert f"Redis 运行标签 {first_label}" in err
    assert jobdir.read_marker(kept)["redis_run"] == first_label and jobdir.is_resumable(kept)
    client = _redis()
    try:
        prefix = f"xunjian:{first_label}:board"
        assert client.exists(f"{prefix}:requests") and client.exists(f"{prefix}:dupefilter")
        for key in (f"{prefix}:requests", f"{prefix}:dupefilter"):
            assert 0 < client.ttl(key) <= 7 * 86400, key  # an abandoned frontier expires

        # The next scheduled fire brings a new label; the resumed run keeps the interrupted one.
        monkeypatch.setenv("XUNJIAN_REDIS_RUN", second_label)
        code, err = finish(start_job(tmp_path, server.url, 0.0))
        assert code == 0, err
        assert "续抓" in err and f"沿用中断时的 Redis 运行标签 {first_label}" in err
        assert client.exists(f"{prefix}:done")  # the interrupted frontier was finished, not abandoned
        assert not client.exists(f"{prefix}:requests") and not client.exists(f"{prefix}:dupefilter")
        assert not list(client.scan_iter(match=f"xunjian:{second_label}:*"))
    finally:
        for key in client.scan_iter(match=f"xunjian:{first_label}:*"):
            client.delete(key)
        client.close()
    # The same fetches as one uninterrupted crawl: the second run did not start the board over.
    assert Counter(ad_fetches(log, start)) == reference["fetches"]
