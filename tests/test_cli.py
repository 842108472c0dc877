"""The CLI as a new user meets it: demo, errors with one line and the right exit code, scrapy commands."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys

from crawler.demo import SOURCES_FILE
from tests.conftest import ROOT, run_cli


def test_demo_runs_end_to_end(tmp_path):
    db = tmp_path / "demo.db"
    result = run_cli("demo", "--db", f"sqlite:///{db}", env={"XUNJIAN_DATA_DIR": str(tmp_path / "data")})
    assert result.code == 0, result.err
    assert "演示网站已启动：http://127.0.0.1:" in result.out
    assert "巡查线索" in result.out and "违规类型" in result.out
    assert f"数据库位置：{db}" in result.out
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from leads").fetchone()[0] > 0


def test_help_is_documented():
    top = run_cli("--help")
    assert top.code == 0
    for command in ("crawl", "demo", "leads", "sources", "db"):
        assert re.search(rf"^\s+{command}\s+\S", top.out, re.M), command
    for args in (("crawl",), ("leads",), ("demo",), ("sources", "check"), ("db", "upgrade")):
        result = run_cli(*args, "--help")
        assert result.code == 0 and "Usage:" in result.out, args


def test_bad_sources_file_one_line_exit_2(tmp_path):
    bad = tmp_path / "sources.toml"
    bad.write_text('[[source]]\nname = "x"\nkind = "web"\nstart_urls = ["http://127.0.0.1:9/"]\n', encoding="utf-8")
    db = tmp_path / "x.db"
    for args in (("sources", "check", str(bad)), ("crawl", "--sources", str(bad), "--db", f"sqlite:///{db}")):
        result = run_cli(*args)
        assert result.code == 2, result
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("错误："), result.err
        assert f"{bad}:3:" in lines[0] and '字段 "kind"' in lines[0]
    assert not db.exists()  # nothing written before the input was known to be good


def test_sources_check_accepts_the_demo_file():
    result = run_cli("sources", "check", str(SOURCES_FILE), env={"XUNJIAN_DEMO_URL": "http://127.0.0.1:1"})
    assert result.code == 0, result.err
    assert "配置有效" in result.out


def test_unreachable_start_url_one_line_exit_1(tmp_path):
    src = tmp_path / "sources.toml"
    src.write_text('[[source]]\nname = "gone"\nkind = "site"\nstart_urls = ["http://127.0.0.1:9/"]\nallow_private = true\n', encoding="utf-8")
    db = tmp_path / "x.db"
    result = run_cli("crawl", "--sources", str(src), "--db", f"sqlite:///{db}", env={"XUNJIAN_DATA_DIR": str(tmp_path)})
    assert result.code == 1
    errors = [ln for ln in result.err.splitlines() if ln.startswith("错误：")]
    assert len(errors) == 1 and "gone" in errors[0] and "http://127.0.0.1:9/" in errors[0], result.err
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from pages").fetchone()[0] == 0
        run = conn.execute("select finish_reason, finished_at from crawl_runs").fetchone()
    assert run[0] == "start_unreachable" and run[1] is not None  # the run is recorded whole, not half


def test_crawler_that_fails_to_start_is_an_error_not_a_quiet_success(demo_site, tmp_path):
    """A source whose crawler dies while opening (here: the database refuses the run record, as a full
    disk would) must fail the command with one line, even though the other source crawled fine."""
    db = tmp_path / "x.db"
    assert run_cli("db", "upgrade", "--db", f"sqlite:///{db}").code == 0
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TRIGGER refuse_news BEFORE INSERT ON crawl_runs "
                     "WHEN (SELECT name FROM sources WHERE id = NEW.source_id) = 'news' "
                     "BEGIN SELECT RAISE(ABORT, 'no room for news'); END")
    env = {"XUNJIAN_DEMO_URL": demo_site.url, "XUNJIAN_DATA_DIR": str(tmp_path / "data")}
    result = run_cli("crawl", "--sources", str(SOURCES_FILE), "--source", "huizhi", "--source", "news",
                     "--db", f"sqlite:///{db}", env=env)
    assert result.code == 1, result.out + result.err
    errors = [ln for ln in result.err.splitlines() if ln.startswith("错误：")]
    assert len(errors) == 1 and '来源 "news" 抓取出错' in errors[0] and "no room for news" in errors[0], result.err
    with sqlite3.connect(db) as conn:
        runs = dict(conn.execute("select s.name, r.finish_reason from crawl_runs r join sources s on s.id = r.source_id"))
    assert runs == {"huizhi": "finished"}


def test_unwritable_database_one_line_exit_1(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli("leads", "--db", f"sqlite:///{blocker}/sub/x.db")
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("错误：") and str(blocker) in lines[0], result.err


def test_bad_date_option_exit_2(tmp_path):
    result = run_cli("leads", "--date", "2026-13-01", "--db", f"sqlite:///{tmp_path}/x.db")
    assert result.code == 2 and "YYYY-MM-DD" in result.err


def test_scrapy_list_and_crawl_from_project_root(demo_site, tmp_path):
    env = {**os.environ, "XUNJIAN_DEMO_URL": demo_site.url, "XUNJIAN_SOURCES": str(SOURCES_FILE),
           "XUNJIAN_DB_URL": f"sqlite:///{tmp_path / 's.db'}"}
    scrapy = [sys.executable, "-m", "scrapy"]
    listed = subprocess.run([*scrapy, "list"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == {"listing", "site", "sitemap"}
    crawl = subprocess.run([*scrapy, "crawl", "sitemap", "-a", "source=mingshi"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert crawl.returncode == 0, crawl.stderr[-3000:]
    assert "'item_scraped_count'" in crawl.stderr
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("select count(*) from pages where url like '%/inst/mingshi/%'").fetchone()[0] >= 4
