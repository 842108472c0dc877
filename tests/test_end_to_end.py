"""The whole path on the demo site: real spiders → extract → detect → store, checked against the answer key."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from crawler.demo import SOURCES_FILE
from storage.db import open_database
from storage.models import Finding, Lead, Page, Snapshot
from storage.repository import list_leads
from tests.conftest import run_cli

NON_LEAD = {"minor_training_ad"}


@pytest.fixture(scope="module")
def crawled(demo_site, tmp_path_factory):
    """One full crawl of every demo source into a fresh SQLite database, through the CLI."""
    tmp = tmp_path_factory.mktemp("e2e")
    db_url = f"sqlite:///{tmp / 'xunjian.db'}"
    env = {"XUNJIAN_DEMO_URL": demo_site.url, "XUNJIAN_DATA_DIR": str(tmp / "data")}
    result = run_cli("crawl", "--sources", str(SOURCES_FILE), "--db", db_url, env=env)
    assert result.code == 0, result.err
    return {"db_url": db_url, "env": env, "result": result, "base": demo_site.url}


def counts(db_url: str) -> dict[str, int]:
    db = open_database(db_url)
    with db.session() as s:
        out = {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in (Page, Snapshot, Finding, Lead)}
    db.dispose()
    return out


def stored_pages(db_url: str, base: str) -> dict[str, Snapshot]:
    db = open_database(db_url)
    with db.session() as s:
        rows = s.execute(select(Page.url, Snapshot).join(Snapshot, Snapshot.id == Page.last_snapshot_id)).all()
        s.expunge_all()
    db.dispose()
    return {url.removeprefix(base): snap for url, snap in rows}


def lead_paths(db_url: str, base: str) -> set[str]:
    db = open_database(db_url)
    leads = list_leads(db, all=True)
    db.dispose()
    return {u.removeprefix(base) for lead in leads for u in lead.urls}


def test_leads_match_answer_key_exactly(crawled, answer_key):
    expected = {p for p, v in answer_key.violations.items() if set(v["categories"]) - NON_LEAD}
    got = lead_paths(crawled["db_url"], crawled["base"])
    true_pos = expected & got
    precision = len(true_pos) / len(got) if got else 0.0
    recall = len(true_pos) / len(expected)
    assert (precision, recall) == (1.0, 1.0), f"missed {sorted(expected - got)}; extra {sorted(got - expected)}"


def test_every_page_has_the_keyed_categories(crawled, answer_key):
    pages = stored_pages(crawled["db_url"], crawled["base"])
    wrong = {}
    for path, info in answer_key.violations.items():
        snap = pages.get(path)
        got = sorted(snap.categories) if snap else None
        if got != sorted(info["categories"]):
            wrong[path] = (got, sorted(info["categories"]))
    for path in answer_key.clean:
        snap = pages.get(path)
        if snap is None or snap.categories:
            wrong[path] = (None if snap is None else sorted(snap.categories), [])
    assert not wrong, wrong


def test_disallowed_broken_and_trap_pages_stay_out(crawled, answer_key):
    pages = stored_pages(crawled["db_url"], crawled["base"])
    for path in list(answer_key.disallowed) + list(answer_key.broken):
        assert path not in pages, path
    trap = [p for p in pages if p.startswith(answer_key.trap_prefix)]
    assert 0 < len(trap) <= 10, trap  # reached, but contained by the depth limit
    assert all(not pages[p].categories for p in trap)


def test_gbk_pages_keep_their_characters(crawled, answer_key):
    pages = stored_pages(crawled["db_url"], crawled["base"])
    gbk = [p for p, s in pages.items() if (s.encoding or "").lower() in ("gb2312", "gbk", "gb18030")]
    assert len(gbk) >= 4
    for path in gbk:
        text = pages[path].text
        assert "\ufffd" not in text, path
        assert any("\u4e00" <= ch <= "\u9fff" for ch in text), path


def test_js_course_list_found_through_the_browser(crawled, answer_key):
    rendered = [p for p, v in answer_key.violations.items() if v.get("render")]
    assert rendered
    pages = stored_pages(crawled["db_url"], crawled["base"])
    for path in rendered:
        assert path in pages and pages[path].categories, path


def test_recrawl_adds_nothing(crawled):
    before = counts(crawled["db_url"])
    result = run_cli("crawl", "--sources", str(SOURCES_FILE), "--db", crawled["db_url"], env=crawled["env"])
    assert result.code == 0, result.err
    assert counts(crawled["db_url"]) == before
    assert before["leads"] > 0 and before["findings"] > 0


def test_leads_json_format(crawled):
    result = run_cli("leads", "--all", "--format", "json", "--db", crawled["db_url"])
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    assert rows
    for row in rows:
        assert {"id", "name", "categories", "severity", "score", "status", "urls", "first_seen", "last_seen"} <= set(row)
        assert row["status"] == "new" and row["urls"] and 0 <= row["score"] <= 1
    severities = [r["severity"] for r in rows]
    assert severities == sorted(severities, reverse=True)
    today = run_cli("leads", "--format", "json", "--db", crawled["db_url"])
    assert len(json.loads(today.out)) == len(rows)  # everything was seen today
    csv_out = run_cli("leads", "--all", "--format", "csv", "--db", crawled["db_url"]).out
    assert csv_out.startswith("\ufeff线索编号,机构名称,违规类型")
