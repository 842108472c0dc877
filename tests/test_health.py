"""Crawl health rules, `xunjian status`/`runs`, alerts POSTed to a real local webhook, and the canary."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import run_cli
from tests.test_scheduler import Scheduler, sources_file, wait_for


@pytest.fixture
def webhook(monkeypatch):
    """A real HTTP server on 127.0.0.1 that records every JSON POST it receives (a private address:
    the operator's explicit allowance is set, for this process and the commands it starts)."""
    monkeypatch.setenv("XUNJIAN_WEBHOOK_ALLOW_PRIVATE", "1")
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            received.append({"path": self.path, "type": self.headers.get("Content-Type"),
                             "body": json.loads(self.rfile.read(length).decode("utf-8"))})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def db(tmp_path):
    from storage.db import open_database

    database = open_database(f"sqlite:///{tmp_path / 'h.db'}")
    yield database
    database.dispose()


def add_run(db, source: str, reason: str | None, pages: int, errors: int = 0, stats: dict | None = None) -> int:
    from storage.repository import finish_run, start_run

    run_id = start_run(db, source, "listing", {})
    if reason is not None:
        finish_run(db, run_id, reason, stats or {}, pages, errors, 0, 0)
    return run_id


def health(db, source: str, running: bool = False):
    from crawler.health import source_health

    return source_health(db, source, running=running)


def test_a_normal_run_is_healthy_and_limits_count_as_normal(db):
    add_run(db, "a", "finished", 40)
    add_run(db, "a", "closespider_pagecount", 42, errors=3)
    result = health(db, "a")
    assert result.healthy and result.label == "健康" and result.run.pages == 42


@pytest.mark.parametrize("reason, words", [("start_unreachable", "起始网址无法访问"), ("exit_1", "退出码 1")])
def test_a_failed_last_run_is_unhealthy(db, reason, words):
    add_run(db, "a", "finished", 40)
    add_run(db, "a", reason, 0)
    result = health(db, "a")
    assert not result.healthy and result.label == "异常" and words in result.reason


def test_a_redis_worker_that_found_its_run_done_is_not_judged(db):
    # A late worker of a shared Redis frontier closes at once with nothing to do; health judges the
    # runs before it, healthy or not.
    add_run(db, "a", "finished", 40)
    add_run(db, "a", "redis_frontier_done", 0)
    result = health(db, "a")
    assert result.healthy and result.run.pages == 40
    add_run(db, "b", "start_unreachable", 0)
    add_run(db, "b", "redis_frontier_done", 0)
    result = health(db, "b")
    assert not result.healthy and "起始网址无法访问" in result.reason


def test_a_stopped_run_is_healthy_resumable_or_not(db):
    add_run(db, "a", "finished", 40)
    add_run(db, "a", "shutdown", 3, stats={"xunjian/jobdir": 1})
    result = health(db, "a")
    assert result.healthy and result.label == "健康" and "断点继续" in result.reason
    add_run(db, "b", "finished", 40)
    add_run(db, "b", "shutdown", 3)  # a foreground crawl (no JOBDIR) stopped with Ctrl-C
    result = health(db, "b")
    assert result.healthy and "人工中止" in result.reason


def test_three_stops_in_a_row_are_unhealthy(db):
    add_run(db, "a", "finished", 40)
    previous = 0
    for count in range(1, 4):
        stats = {"xunjian/jobdir": 1, **({"xunjian/resumed_from": previous} if previous else {})}
        previous = add_run(db, "a", "shutdown", 5, stats=stats)
        result = health(db, "a")
        assert result.healthy == (count < 3), count
    assert result.label == "异常" and "连续 3 次被中止" in result.reason
    add_run(db, "a", "finished", 40)
    assert health(db, "a").healthy


def test_a_resumed_run_is_judged_with_the_runs_it_continues(db):
    for _ in range(3):
        add_run(db, "a", "finished", 100)
    first = add_run(db, "a", "shutdown", 60, errors=4, stats={"xunjian/jobdir": 1})
    second = add_run(db, "a", "shutdown", 30, errors=3, stats={"xunjian/jobdir": 1, "xunjian/resumed_from": first})
    add_run(db, "a", "finished", 10, errors=5, stats={"xunjian/jobdir": 1, "xunjian/resumed_from": second})
    # Alone, 10 pages against a median of 100 (and more errors than pages); with its chain: 100 and 12.
    result = health(db, "a")
    assert result.healthy, result.reason
    assert result.run.pages == 10  # the run shown is still the last one
    # The chain counts as one run of 100 pages in the history too, and the stops are not history.
    add_run(db, "a", "finished", 48)
    result = health(db, "a")
    assert not result.healthy and "页面数骤降" in result.reason and "中位数 100 个" in result.reason


def test_a_resumed_run_that_really_dropped_is_unhealthy(db):
    for _ in range(3):
        add_run(db, "a", "finished", 100)
    first = add_run(db, "a", "shutdown", 20, stats={"xunjian/jobdir": 1})
    add_run(db, "a", "finished", 10, stats={"xunjian/jobdir": 1, "xunjian/resumed_from": first})
    result = health(db, "a")
    assert not result.healthy and "页面数骤降：本次 30 个" in result.reason and "续抓" in result.reason


def test_an_unfinished_run_is_unhealthy_unless_still_running(db):
    add_run(db, "a", None, 0)
    assert not health(db, "a").healthy and "没有正常结束" in health(db, "a").reason
    assert health(db, "a", running=True).healthy


def test_mostly_errors_is_unhealthy(db):
    add_run(db, "a", "finished", 5, errors=6)
    assert "错误过多" in health(db, "a").reason
    add_run(db, "a", "finished", 6, errors=6)
    assert health(db, "a").healthy


def test_far_fewer_pages_than_recent_runs_is_unhealthy(db):
    for pages in (100, 10, 90, 95, 120):  # median of the previous five: 95
        add_run(db, "a", "finished", pages)
    add_run(db, "a", "start_unreachable", 0)  # failed runs do not count as history
    add_run(db, "a", "finished", 47)  # under half of 95
    result = health(db, "a")
    assert not result.healthy and "页面数骤降" in result.reason and "95" in result.reason
    add_run(db, "a", "finished", 50)  # history now 47, 120, 95, 90, 10: median 90, and 50 >= 45
    assert health(db, "a").healthy


def test_selectors_that_stop_matching_are_unhealthy(db):
    add_run(db, "a", "finished", 0, stats={"xunjian/listing_pages": 3, "xunjian/selectors/detail_link_empty": 3})
    assert "detail_link" in health(db, "a").reason
    add_run(db, "a", "finished", 10, stats={"xunjian/selectors/title_empty": 10})
    assert "标题选择器失效" in health(db, "a").reason
    add_run(db, "a", "finished", 10, stats={"xunjian/selectors/body_empty": 4, "xunjian/listing_pages": 3,
                                           "xunjian/selectors/detail_link_empty": 1})
    assert health(db, "a").healthy


def test_status_and_runs_commands(db, tmp_path):
    add_run(db, "alpha", "finished", 12, errors=2, stats={"xunjian/errors/http_500": 1, "xunjian/errors/timeout": 1})
    add_run(db, "beta", "start_unreachable", 0, errors=1, stats={"xunjian/errors/connection": 1})
    sources = sources_file(tmp_path / "sources.toml", {"alpha": "0 6 * * *", "beta": "0 7 * * *", "gamma": "0 8 * * *"})
    status = run_cli("status", "--sources", str(sources), "--db", db.url, "--data-dir", str(tmp_path / "d"))
    assert status.code == 0
    lines = {line.split("│")[1].strip(): line for line in status.out.splitlines() if line.count("│") > 3}
    assert "健康" in lines["alpha"] and "异常" in lines["beta"] and "起始网址无法访问" in lines["beta"]
    assert "从未抓取" in lines["gamma"] and "未调度" in lines["gamma"]
    runs = run_cli("runs", "--db", db.url)
    assert runs.code == 0
    assert "http_500 1" in runs.out and "timeout 1" in runs.out and "connection 1" in runs.out
    only = run_cli("runs", "--source", "beta", "--db", db.url)
    assert "beta" in only.out and "alpha" not in only.out
    bad = run_cli("status", "--sources", str(tmp_path / "missing.toml"), "--db", db.url)
    assert bad.code == 2 and bad.err.startswith("错误：") and "missing.toml" in bad.err


def test_alert_is_posted_as_json_to_the_webhook(webhook):
    from crawler.health import alert

    url, received = webhook
    payload = alert("crawl_health", "页面数骤降", source="alpha", details={"pages": 3}, webhook_url=url)
    assert len(received) == 1
    assert received[0]["path"] == "/hook" and received[0]["type"].startswith("application/json")
    assert received[0]["body"] == payload and payload["source"] == "alpha" and payload["details"] == {"pages": 3}


def test_failing_scheduled_crawl_is_recorded_and_alerted(tmp_path, webhook):
    url, received = webhook
    sources = sources_file(tmp_path / "sources.toml", {"alpha": "0 6 * * *"})
    s = Scheduler(tmp_path, sources, {"XUNJIAN_SCHEDULE_INTERVAL": "0.5", "FAKE_EXIT": "1",
                                      "XUNJIAN_WEBHOOK_URL": url}).start()
    try:
        wait_for(lambda: received, what="webhook POST")
    finally:
        assert s.stop() == 0
    body = received[0]["body"]
    assert body["kind"] == "crawl_health" and body["source"] == "alpha" and "退出码 1" in body["message"]
    assert "告警[crawl_health]" in s.output()
    runs = run_cli("runs", "--source", "alpha", "--db", s.db_url)
    assert "抓取进程异常退出（退出码 1）" in runs.out


def test_canary_passes_on_the_demo_site(tmp_path, webhook):
    url, received = webhook
    result = run_cli("canary", "--data-dir", str(tmp_path / "data"), env={"XUNJIAN_WEBHOOK_URL": url})
    assert result.code == 0, result.err
    assert "自检通过" in result.out
    assert received == []
    assert list((tmp_path / "data" / "canary").iterdir()) == []


def test_canary_fails_when_an_expected_finding_is_missing(tmp_path, webhook):
    url, received = webhook
    from crawler.demo import SOURCES_FILE

    key = json.loads(SOURCES_FILE.with_name("answer_key.json").read_text("utf-8"))
    clean = sorted(p for p in key["clean"] if p.startswith("/board/ad/"))[0]
    key["violations"][clean] = {"categories": ["banned_ad"], "families": ["BA1"], "institution": None,
                                "render": False, "note": "sabotaged: a clean page the canary must flag"}
    sabotaged = tmp_path / "key.json"
    sabotaged.write_text(json.dumps(key, ensure_ascii=False), encoding="utf-8")
    result = run_cli("canary", "--data-dir", str(tmp_path / "data"), "--answer-key", str(sabotaged),
                     env={"XUNJIAN_WEBHOOK_URL": url})
    assert result.code == 1 and result.err.startswith("错误：自检失败") and clean in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert len(received) == 1 and received[0]["body"]["kind"] == "canary"
    assert received[0]["body"]["details"]["missing"] == [clean]


def test_canary_fails_when_the_pipeline_stores_nothing(tmp_path, webhook):
    url, received = webhook
    script = tmp_path / "noop_crawl.py"
    script.write_text("import sys\nsys.exit(0)\n")
    result = run_cli("canary", "--data-dir", str(tmp_path / "data"),
                     env={"XUNJIAN_WEBHOOK_URL": url, "XUNJIAN_CRAWL_COMMAND": f"{sys.executable} {script}"})
    assert result.code == 1 and "没有被识别" in result.err
    assert len(received) == 1 and received[0]["body"]["details"]["found"] == 0


def test_a_crawler_that_failed_after_opening_is_unhealthy_whatever_scrapy_recorded(db):
    from storage.repository import fail_run

    add_run(db, "a", "finished", 40)
    run_id = add_run(db, "a", "shutdown", 0, stats={"xunjian/jobdir": 1})  # what Scrapy closes it with
    assert health(db, "a").healthy
    fail_run(db, run_id, "crawler_error", "IntegrityError: duplicate key")
    result = health(db, "a")
    assert not result.healthy and "抓取程序出错" in result.reason
