"""One institution = one lead: identifier extraction, grouping, auto-merge, and the demo's partition.

SQLite always; PostgreSQL too when XUNJIAN_TEST_PG_URL is set (each test in a
throwaway schema).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text

from storage.db import Database, open_database
from storage.identifiers import extract_all, is_generic_name, name_core
from storage.models import AuditEvent, Finding, Lead, LeadIdentifier
from storage.records import FindingRecord, PageRecord
from storage.repository import list_leads, store_batch
from tests.conftest import pg_schema_database

PG_URL = os.environ.get("XUNJIAN_TEST_PG_URL")
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)


# ---------------------------------------------------------------- shared fixtures and helpers


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason="XUNJIAN_TEST_PG_URL 未设置"))]
)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = open_database(f"sqlite:///{tmp_path / 'xunjian.db'}")
        yield database
        database.dispose()
        return
    with pg_schema_database("xunjian_leads") as database:
        yield database


def finding(category: str = "banned_ad", severity: int = 3) -> FindingRecord:
    return FindingRecord(category=category, subcategory="x", rule=f"{category}.rule", severity=severity,
                         start=0, end=2, text="初二", normalized="初二", explanation="说明", basis="依据")


def page(url: str, body: str, *, title: str = "", fetched_at: datetime = T0, score: float = 0.5,
         findings: list[FindingRecord] | None = None) -> PageRecord:
    return PageRecord(
        source="test", url=url, requested_url=url, final_url=url, fetched_at=fetched_at, status=200,
        headers={}, encoding="utf-8", title=title, text=body, fields={}, image_urls=[],
        content_hash=hashlib.sha256(f"{url}\n{title}\n{body}".encode()).hexdigest(),
        categories=["banned_ad"], score=score, rules_version="test",
        findings=[finding()] if findings is None else findings,
    )


def partition(database: Database) -> set[frozenset[str]]:
    return {frozenset(view.urls) for view in list_leads(database, all=True)}


# ---------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("报名电话 138 0013 8000", {("phone", "13800138000")}),
        ("电话：１３８－００１３－８０００", {("phone", "13800138000")}),
        ("电话一三八 零零一三 八零零零", {("phone", "13800138000")}),
        ("座机 0571-88886666", {("phone", "0571-88886666")}),
        ("V信：Teacher_Li88", {("wechat", "teacher_li88")}),
        ("加V abc_123456，薇信 xq_yingyu0822", {("wechat", "abc_123456"), ("wechat", "xq_yingyu0822")}),
        ("QQ：12345678 或 扣扣 998877", {("qq", "12345678"), ("qq", "998877")}),
        ("统一社会信用代码：91110108MA01ABCD2X", {("uscc", "91110108MA01ABCD2X")}),
        ("办学许可证号：教民141010570000123号", {("license", "教民141010570000123")}),
        ("滨江市慧智教育科技有限公司主办", {("name", "慧智")}),
        ("地址：南湖区文华路88号慧智大厦3楼", {("address", "南湖区文华路88号慧智大厦3楼")}),
        ("原价3680元 现价1680元", {("price", "原价3680元"), ("price", "1680元")}),
        ("1680元/期（12次课）", {("price", "1680元/期")}),
        ("已成交 138****1111 家长好评", set()),
        ("客服 400-123-4567，银行 95588，投诉 12315", set()),
        ("思维教育 学习中心 欢迎报名", set()),
        ("7天6晚，入住大学校园，位于市中心", set()),
    ],
)
def test_extract_identifier_table(body: str, expected: set[tuple[str, str]]) -> None:
    found = {(i.kind, i.value) for i in extract_all("", body) if i.kind not in {"teacher"}}
    assert found == expected


def test_raw_form_is_kept_next_to_the_normalised_value() -> None:
    [phone] = [i for i in extract_all("", "电话：一三八零零零零一一一一") if i.kind == "phone"]
    assert (phone.value, phone.raw) == ("13800001111", "一三八零零零零一一一一")
    [teacher] = [i for i in extract_all("", "联系刘老师") if i.kind == "teacher"]
    assert teacher.value == "刘老师"


def test_registered_name_is_the_raw_form_kept_for_a_name() -> None:
    [name] = [i for i in extract_all("关于我们 - 慧智教育", "滨江市慧智教育科技有限公司成立于2014年") if i.kind == "name"]
    assert (name.value, name.raw) == ("慧智", "滨江市慧智教育科技有限公司")


def test_title_segments_name_the_institution() -> None:
    assert [(i.kind, i.value) for i in extract_all("收费标准 - 慧智教育", "")] == [("name", "慧智")]
    names = [i.value for i in extract_all("课程中心 - 慧智云课堂", "") if i.kind == "name"]
    assert names == ["慧智云课堂"]  # "课程中心" is a page label, not an advertiser


@pytest.mark.parametrize(
    ("name", "core"),
    [
        ("慧智教育", "慧智"),
        ("滨江市慧智教育科技有限公司", "慧智"),
        ("慧智教育（東城校區）", "慧智"),
        ("滨江市名师堂文化传播有限公司", "名师堂"),
        ("阳光培训学校", "阳光"),
        ("思维教育", ""),
        ("学习中心", ""),
        ("名校家教中心", ""),
    ],
)
def test_name_core(name: str, core: str) -> None:
    assert name_core(name) == core
    assert is_generic_name(name) == (core == "")


# ---------------------------------------------------------------- grouping


def test_phone_in_different_spellings_links(db: Database) -> None:
    store_batch(db, None, [
        page("https://a.example/1", "初二数学 电话 138-0013-8000"),
        page("https://b.example/2", "保过班 联系１３８ ００１３ ８０００"),
        page("https://c.example/3", "寒假班 电话一三八零零一三八零零零"),
    ])
    assert partition(db) == {frozenset({"https://a.example/1", "https://b.example/2", "https://c.example/3"})}


def test_wechat_links(db: Database) -> None:
    store_batch(db, None, [
        page("https://a.example/1", "初二数学 微信：Huizhi_Jiaoyu"),
        page("https://b.example/2", "加V huizhi_jiaoyu 咨询"),
    ])
    assert len(partition(db)) == 1


def test_fuzzy_name_links_brand_company_and_branch(db: Database) -> None:
    store_batch(db, None, [
        page("https://a.example/index", "寒假班火热招生", title="慧智教育 - 首页"),
        page("https://b.example/about", "滨江市慧智教育科技有限公司成立于2014年"),
        page("https://c.example/branch", "欢迎来到慧智教育（東城校區）报名初二数学"),
        page("https://d.example/camp", "博雅思维成长营地培训学校 初一数学"),
        page("https://e.example/camp", "博雅思维成长营培训中心 初一英语"),
    ])
    assert partition(db) == {
        frozenset({"https://a.example/index", "https://b.example/about", "https://c.example/branch"}),
        frozenset({"https://d.example/camp", "https://e.example/camp"}),
    }
    with db.session() as session:
        names = set(session.scalars(select(LeadIdentifier.raw).where(LeadIdentifier.kind == "name")))
    assert {"慧智教育", "滨江市慧智教育科技有限公司", "慧智教育(東城校區)"} <= names
    shown = {view.name for view in list_leads(db, all=True)}
    assert "滨江市慧智教育科技有限公司" in shown  # the registered name is what a lead shows


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("滨江市慧智教育科技有限公司 初二数学", "滨江市博学教育科技有限公司 初二数学"),
        ("已成交 138****1111 初二数学", "好评 138****1111 初三物理"),
        ("全国客服 400-800-1234 初二数学", "全国客服 400-800-1234 初三物理"),
        ("思维教育 初二数学", "思维教育 初三物理"),
        ("学习中心 初二数学", "学习中心 初三物理"),
        ("刘老师 初二数学", "刘老师 初三物理"),
        ("地址：南湖区文华路88号 初二数学", "地址：南湖区文华路88号 初三物理"),
    ],
)
def test_things_that_must_not_link(db: Database, first: str, second: str) -> None:
    store_batch(db, None, [page("https://a.example/1", first), page("https://b.example/2", second)])
    assert len(partition(db)) == 2


def test_new_evidence_merges_two_leads_with_audit(db: Database) -> None:
    store_batch(db, None, [page("https://a.example/1", "初二数学 电话 13800138000")])
    store_batch(db, None, [page("https://b.example/2", "初三物理 微信：teacher_wang88",
                                fetched_at=T0 + timedelta(days=1))])
    assert len(partition(db)) == 2
    store_batch(db, None, [page("https://c.example/3", "报名 13800138000 或 微信 teacher_wang88",
                                fetched_at=T0 + timedelta(days=2))])
    [view] = list_leads(db, all=True)
    assert view.urls == ["https://a.example/1", "https://b.example/2", "https://c.example/3"]
    with db.session() as session:
        older, newer = session.scalars(select(Lead).order_by(Lead.id)).all()
        assert view.id == older.id
        assert (newer.merged_into_id, newer.status) == (older.id, "merged")
        assert set(session.scalars(select(Finding.lead_id))) == {older.id}
        assert session.scalars(select(LeadIdentifier.lead_id).distinct()).all() == [older.id]
        merges = session.scalars(select(AuditEvent).where(AuditEvent.action == "merge")).all()
    assert {(m.lead_id, m.actor) for m in merges} == {(older.id, "system"), (newer.id, "system")}
    kept = next(m for m in merges if m.lead_id == older.id)
    assert kept.details["merged_lead"] == newer.id and kept.details["url"] == "https://c.example/3"
    assert {"kind": "wechat", "value": "teacher_wang88"}.items() <= kept.details["links"][0].items()
    assert "微信 teacher_wang88" in kept.reason


def test_identifiers_keep_first_and_last_seen(db: Database) -> None:
    record = page("https://a.example/1", "初二数学 电话 138 0013 8000")
    store_batch(db, None, [record])
    store_batch(db, None, [page(record.url, record.text, fetched_at=T0 + timedelta(days=3))])
    with db.session() as session:
        row = session.scalars(select(LeadIdentifier).where(LeadIdentifier.kind == "phone")).one()
    assert (row.value, row.raw) == ("13800138000", "138 0013 8000")
    assert (row.first_seen, row.last_seen) == (T0, T0 + timedelta(days=3))


def test_new_page_of_a_known_advertiser_grows_its_evidence(db: Database) -> None:
    store_batch(db, None, [page("https://a.example/1", "初二数学 13800138000")])
    result = store_batch(db, None, [page("https://a.example/2", "初三物理 13800138000",
                                         fetched_at=T0 + timedelta(days=1))])
    assert result.new_leads == 0
    [view] = list_leads(db, all=True)
    assert view.urls == ["https://a.example/1", "https://a.example/2"]
    assert view.last_seen == T0 + timedelta(days=1)


# ---------------------------------------------------------------- the demo site


NON_LEAD = {"minor_training_ad"}


def test_demo_leads_follow_the_answer_key_institutions(demo_site, answer_key, tmp_path) -> None:
    from crawler.demo import SOURCES_FILE
    from tests.conftest import run_cli

    db_url = f"sqlite:///{tmp_path / 'demo.db'}"
    env = {"XUNJIAN_DEMO_URL": demo_site.url, "XUNJIAN_DATA_DIR": str(tmp_path / "data")}
    result = run_cli("crawl", "--sources", str(SOURCES_FILE), "--db", db_url, env=env)
    assert result.code == 0, result.err
    database = open_database(db_url)
    try:
        views = list_leads(database, all=True)
        got = {frozenset(u.removeprefix(demo_site.url) for u in view.urls) for view in views}
        names = {u.removeprefix(demo_site.url): view.name for view in views for u in view.urls}
    finally:
        database.dispose()
    violating = {p: v for p, v in answer_key.violations.items() if set(v["categories"]) - NON_LEAD}
    # Which pages get flagged is test_end_to_end's business: grouping is judged on the flagged
    # pages the key calls violating; a page flagged by mistake must at least stay on its own.
    for group in got:
        assert len(group) == 1 or group <= set(violating), sorted(group)
    got = {frozenset(group & set(violating)) for group in got} - {frozenset()}
    grouped = {p for group in got for p in group}
    expected: dict[str, set[str]] = {}
    for path in grouped:
        label = violating[path]["institution"] or f"page:{path}"
        expected.setdefault(label, set()).add(path)
    assert got == {frozenset(group) for group in expected.values()}
    huizhi = next(group for group in got if "/board/ad/101.html" in group)
    assert {"/inst/huizhi/index.html", "/platform/index.html"} <= huizhi  # board, own site, JS list
    if "/inst/huizhi/about.html" in huizhi:  # the only page that shows the registered name
        assert names["/board/ad/101.html"] == answer_key.violations["/board/ad/101.html"]["institution"]


def test_long_urls_sharing_a_prefix_stay_apart(db: Database) -> None:
    prefix = "https://a.example/search?q=" + "x" * 400
    store_batch(db, None, [page(prefix + "1", "初二数学 冲刺"), page(prefix + "2", "初三物理 冲刺")])
    assert len(partition(db)) == 2
    store_batch(db, None, [page(prefix + "1", "初二数学 冲刺 新版", fetched_at=T0 + timedelta(days=1))])
    assert partition(db) == {frozenset({prefix + "1"}), frozenset({prefix + "2"})}


def test_upgrade_backfills_identifiers_of_older_leads(db: Database) -> None:
    from alembic import command

    from storage.db import alembic_config, upgrade

    with db.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0001_initial")
    when = T0 if db.engine.dialect.name == "postgresql" else T0.replace(tzinfo=None)
    url = "https://old.example/1"
    with db.engine.begin() as connection:
        def insert(sql: str, **params: object) -> int:
            values = {"t": when, "u": url, "r": url, **params}
            return connection.execute(text(sql + " RETURNING id"), values).scalar_one()

        source = insert("INSERT INTO sources (name, kind, config, created_at, updated_at) "
                        "VALUES ('old', 'site', '{}', :t, :t)")
        page_id = insert("INSERT INTO pages (url, source_id, first_seen, last_seen, requested_url) "
                         "VALUES (:u, :s, :t, :t, :r)", s=source)
        snapshot = insert(
            "INSERT INTO snapshots (page_id, content_hash, fetched_at, status, final_url, title, text, headers, "
            "fields, image_urls, categories, score, rules_version) VALUES (:p, :h, :t, 200, :u, '', "
            "'初二数学 13800138000', '{}', '{}', '[]', '[\"banned_ad\"]', 0.5, 'old')", p=page_id, h="0" * 64)
        lead = insert("INSERT INTO leads (key, name, status, severity, score, categories, first_seen, last_seen, "
                      "created_at, updated_at) VALUES ('phone:13800138000', '旧线索', 'new', 3, 0.5, "
                      "'[\"banned_ad\"]', :t, :t, :t, :t)")
        insert("INSERT INTO findings (snapshot_id, lead_id, category, subcategory, rule, severity, start_offset, "
               "end_offset, text, normalized, explanation, basis, rules_version, created_at) VALUES "
               "(:sn, :l, 'banned_ad', 'x', 'r', 3, 0, 2, '初二', '初二', 'e', 'b', 'old', :t)", sn=snapshot, l=lead)
    upgrade(db.url)
    store_batch(db, None, [page("https://new.example/2", "初三物理 电话 138-0013-8000")])
    [view] = list_leads(db, all=True)
    assert view.id == lead and set(view.urls) == {url, "https://new.example/2"}


def _state(database: Database) -> dict[str, object]:
    """Everything grouping decides, without row ids that depend on how rows were written."""
    from storage.models import Page, Snapshot

    with database.session() as session:
        def rows(*columns):  # noqa: ANN002, ANN202
            return sorted(tuple(row) for row in session.execute(select(*columns)))

        urls = dict(rows(Page.id, Page.url))
        return {
            "pages": rows(Page.url, Page.first_seen, Page.last_seen, Page.last_snapshot_id),
            "snapshots": rows(Snapshot.id, Snapshot.page_id),
            "leads": rows(Lead.id, Lead.key, Lead.name, Lead.status, Lead.merged_into_id, Lead.severity,
                          Lead.first_seen, Lead.last_seen),
            "findings": rows(Finding.snapshot_id, Finding.rule, Finding.lead_id),
            "identifiers": sorted((lead, urls[page], *rest) for lead, page, *rest in rows(
                LeadIdentifier.lead_id, LeadIdentifier.page_id, LeadIdentifier.kind, LeadIdentifier.value,
                LeadIdentifier.raw, LeadIdentifier.first_seen, LeadIdentifier.last_seen)),
            "audit": rows(AuditEvent.lead_id, AuditEvent.action, AuditEvent.from_status, AuditEvent.to_status,
                          AuditEvent.reason),
        }


def test_one_batch_groups_like_one_record_per_batch(db: Database, tmp_path: Path) -> None:
    day = timedelta(days=1)
    records = [
        page("https://a.example/1", "初二数学 电话 13800138000", title="青禾教育"),
        page("https://b.example/2", "初三物理 微信：teacher_wang88", fetched_at=T0 + day),
        page("https://c.example/3", "报名 13800138000 或 微信 teacher_wang88", fetched_at=T0 + 2 * day),
        page("https://d.example/4", "青禾教育科技有限公司 小升初冲刺", title="青禾教育科技有限公司",
             fetched_at=T0 + day),
        page("https://b.example/2", "初三物理 微信：teacher_wang88", fetched_at=T0 + 3 * day),
        page("https://a.example/1", "初二数学 新班 电话 13800138000", fetched_at=T0 - day),
        page("https://e.example/5", "雅思托福 成人英语", findings=[finding("other")]),
        page("https://f.example/6", "高一化学 热线 13900139000", fetched_at=T0 + day),
        page("https://f.example/6", "高一化学 热线 13900139000", fetched_at=T0 + 4 * day),
    ]
    store_batch(db, None, records)
    reference = open_database(f"sqlite:///{tmp_path / 'one_by_one.db'}")
    try:
        for record in records:
            store_batch(reference, None, [record])
        expected = _state(reference)
    finally:
        reference.dispose()
    got = _state(db)
    assert got == expected
    assert any(action == "merge" for _, action, *_ in got["audit"])  # the batch did merge mid-way


# ---------------------------------------------------------------- fast scans give finditer's matches


def _spans(matches) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group(0)) for m in matches]


FILLER = "本周末社区广场有二手家具市集，欢迎街坊选购。出售九成新电动车一辆，价格面议。" * 120


@pytest.mark.parametrize("snippet", [
    "电话 138-0013-8000，", "+86 139 1234 5678", "(0571)88886666", "010-12345678", "0086-13800138000",
    "400-800-1234", "138*****000", "1380013800", "010 12345678 或 13800138000",
    "微信号：teacher_wang88", "VX: abc_defg1", "加v abcdef9", "QQ：12345", "qq群 88888888",
    "朝阳区建国路88号3楼", "北京市海淀区中关村大街27号", "第3号广告", "区号12号",
    "明德培训学校", "启航教育科技有限公司", "学而思(东城校区)", "大学校园", "学校区", "工作室中心",
])
@pytest.mark.parametrize("dense", [False, True])
def test_windowed_scans_find_what_finditer_finds(snippet: str, dense: bool) -> None:
    from storage import identifiers as ids, scan

    cuts = [len(FILLER) // 5, len(FILLER) // 2, len(FILLER) - 3]
    text = FILLER[:cuts[0]] + snippet + FILLER[cuts[0]:cuts[1]] + snippet + snippet + FILLER[cuts[1]:cuts[2]] + snippet
    text = ids._fold_chinese_digits(ids._width_fold(text))
    if dense:  # a short text takes the plain finditer branch
        text = snippet + "，" + snippet
    pairs = [
        (scan.finditer_from(ids._MOBILE, ids._MOBILE_START, text), ids._MOBILE),
        (scan.finditer_from(ids._LANDLINE, ids._LANDLINE_START, text), ids._LANDLINE),
        (scan.finditer_from(ids._WECHAT, ids._WECHAT_START, text), ids._WECHAT),
        (scan.finditer_near(ids._ADDRESS, ids._ADDRESS_ANCHOR, text, ids._ADDRESS_REACH), ids._ADDRESS),
        (scan.finditer_near(ids._NAME, ids._NAME_ANCHOR, text, ids._NAME_REACH, after=2), ids._NAME),
    ]
    for fast, pattern in pairs:
        assert _spans(fast) == _spans(pattern.finditer(text)), pattern.pattern[:40]


def test_phone_gate_and_shared_scan_keep_every_identifier() -> None:
    body = FILLER[:2000] + "报名电话 138 0013 8000，座机(0571)88886666，微信号：teacher_wang88，企鹅 123456" + FILLER[:2000]
    found = {(i.kind, i.value) for i in extract_all("", body)}
    assert {("phone", "13800138000"), ("phone", "0571-88886666"), ("wechat", "teacher_wang88"),
            ("qq", "123456")} <= found
    assert not [i for i in extract_all("", FILLER + "价格 12 元，编号 123456") if i.kind == "phone"]


def test_width_fold_table_values_are_already_folded() -> None:
    """width_fold replaces distinct characters one after another: no value may contain a key."""
    import unicodedata

    from storage import width

    width.width_fold("ａ")  # builds the table
    fold = width._FOLD
    assert fold and set(width._NFKC_TABLE) < set(fold)
    assert not [code for code, folded in fold.items() if any(ord(char) in fold for char in folded)]
    assert width.width_fold("电话：１３８－００１３　８０００（王老师）") == "电话:138-0013 8000(王老师)"
    # Text NFKC composes across characters takes the unicodedata path: the same result.
    mixed = "ｅ\u0301 가\u11a8 ㈱ 𝐀 －‑"
    assert width.width_fold(mixed) == unicodedata.normalize("NFKC", mixed).replace("‐", "-").replace("－", "-")
