"""Exports for enforcement: lead lists, the evidence package, ``verify`` and the hand-over to ``referred``.

Leads are built through the real storage API (store_batch) with real evidence files
written by the evidence store (a WARC made by the crawler's WARC writer, a PNG and
the extracted text). SQLite always; PostgreSQL too when XUNJIAN_TEST_PG_URL is set.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import select

from crawler.evidence.wacz import build_wacz
from crawler.evidence.warc import HttpExchange, warc_bytes
from storage.db import Database, open_database
from storage.evidence import EvidenceStore
from storage.export.package import MANIFEST_JSON, MANIFEST_SHA256, PACKAGE_SHA256, PackageError
from storage.export.run import ExportUsageError, OutputExists, run_export
from storage.export.verify import verify_package
from storage.models import AuditEvent, Lead
from storage.records import FindingRecord, PageRecord
from storage.repository import store_batch
from storage.workflow import review
from tests.conftest import pg_schema_url, run_cli

PG_URL = os.environ.get("XUNJIAN_TEST_PG_URL")
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)  # 10:00 on 2 March in Shanghai
EXPECTED_HEADERS = ["线索编号", "机构名称", "违规类型", "违规内容摘录", "法律依据", "网址", "首次发现时间",
                    "最近发现时间", "联系电话", "微信", "地址", "状态"]
INSTITUTIONS = [
    ("星火教育", "13812340001", "xinghuo2026", "小学数学"),
    ("明德学堂", "13912340002", "mingde88", "初中英语"),
    ("博雅培优", "13712340003", "boya_peiyou", "小学语文"),
]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG_URL, reason="XUNJIAN_TEST_PG_URL 未设置"))])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'xunjian.db'}"
        return
    with pg_schema_url("xunjian_export") as url:
        yield url


def png(width: int, height: int, shade: int) -> bytes:
    """A real grey PNG image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + bytes([shade]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def page_record(store: EvidenceStore, number: int, name: str, phone: str, wechat: str, subject: str) -> PageRecord:
    url = f"http://127.0.0.1:8000/ad/{number}.html"
    body = (f"{name}暑假{subject}培训班火热招生，报名电话 {phone}，微信 {wechat}，"
            f"地址：北京市海淀区中关村大街{number}号3层30{number}室。")
    fetched = T0 + timedelta(minutes=number)
    start = body.index(subject)
    finding = FindingRecord(category="banned_ad", subcategory="subject", rule="BA1.subject-grade", severity=5,
                            start=start, end=start + len(subject), text=subject, normalized=subject,
                            explanation=f"面向中小学生招揽学科类培训（“{subject}”）",
                            basis="《关于进一步减轻义务教育阶段学生作业负担和校外培训负担的意见》")
    html = f"<html><head><title>{name}</title></head><body>{body}</body></html>".encode()
    exchange = HttpExchange(url=url, requested_url=url, method="GET", protocol="HTTP/1.1",
                            request_headers=[("User-Agent", "xunjian-test")], status=200,
                            response_headers=[("Content-Type", "text/html; charset=utf-8")], body=html,
                            fetched_at=fetched)
    evidence = [
        store.put(warc_bytes(exchange, "xunjian-test"), kind="warc", ext="warc", media_type="application/warc",
                  captured_at=fetched)[0],
        store.put(png(8, 4 + number, 40 * number), kind="screenshot", ext="png", media_type="image/png",
                  captured_at=fetched + timedelta(seconds=5))[0],
        store.put(body.encode(), kind="text", ext="txt", media_type="text/plain; charset=utf-8",
                  captured_at=fetched)[0],
    ]
    return PageRecord(source="demo", url=url, requested_url=url, final_url=url, fetched_at=fetched, status=200,
                      headers={"Content-Type": "text/html; charset=utf-8"}, encoding="utf-8", title=name, text=body,
                      fields={}, image_urls=[], content_hash=hashlib.sha256(html).hexdigest(),
                      categories=["banned_ad"], score=0.5 + number / 10, rules_version="r-test-1",
                      findings=[finding], evidence=evidence)


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[dict]:
    data = tmp_path / "data"
    db = open_database(db_url)
    store = EvidenceStore(data)
    store_batch(db, None, [page_record(store, n, *info) for n, info in enumerate(INSTITUTIONS, 1)])
    with db.session() as session:
        ids = {lead.name: lead.id for lead in session.scalars(select(Lead))}
    try:
        yield {"db": db, "data": data, "ids": ids, "url": db_url, "tmp": tmp_path}
    finally:
        db.dispose()


def confirm(db: Database, lead_id: int) -> None:
    review(db, lead_id, "start", "张三")
    review(db, lead_id, "confirm", "张三")


def export(world: dict, out: str, **kwargs):
    options = {"fmt": "json", "status": "all", "data_root": world["data"], "generator": "xunjian-test"}
    options.update(kwargs)
    return run_export(world["db"], out_dir=world["tmp"] / out, **options)


def names_in(package: Path) -> list[str]:
    with zipfile.ZipFile(package) as archive:
        return archive.namelist()


def rewrite(package: Path, target: Path, *, replace: dict[str, bytes] | None = None,
            drop: set[str] = frozenset(), add: dict[str, bytes] | None = None) -> Path:
    """A copy of ``package`` with entries replaced, dropped or added."""
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(target, "w") as out:
        for info in source.infolist():
            if info.filename in drop:
                continue
            out.writestr(info, (replace or {}).get(info.filename, source.read(info)))
        for name, data in (add or {}).items():
            out.writestr(name, data)
    return target


# ---------------------------------------------------------------- lead lists


def test_xlsx_has_chinese_headers_frozen_bold_row_widths_and_real_dates(world):
    result = export(world, "x", fmt="xlsx")
    assert result.list_path.name == "线索清单.xlsx"
    book = openpyxl.load_workbook(result.list_path)
    sheet = book["线索清单"]
    headers = [cell.value for cell in sheet[1]]
    assert headers[:12] == EXPECTED_HEADERS
    assert {"严重程度", "评分", "发现条数", "证据文件数", "规则包版本"} <= set(headers)
    assert sheet.freeze_panes == "A2"
    assert all(cell.font.bold for cell in sheet[1])
    assert sheet.column_dimensions["D"].width >= 40 and sheet.column_dimensions["A"].width > 0
    assert sheet.max_row == 1 + len(INSTITUTIONS)
    rows = {row[0].value: row for row in sheet.iter_rows(min_row=2)}
    lead_id = world["ids"]["星火教育"]
    first_seen = rows[lead_id][headers.index("首次发现时间")]
    assert isinstance(first_seen.value, datetime) and first_seen.value.tzinfo is None
    assert first_seen.value == datetime(2026, 3, 2, 10, 1)  # T0 + 1 min in Shanghai
    assert "yy" in first_seen.number_format and "hh" in first_seen.number_format
    assert rows[lead_id][headers.index("联系电话")].value == "13812340001"
    assert rows[lead_id][headers.index("违规内容摘录")].alignment.wrap_text
    assert rows[lead_id][headers.index("状态")].value == "新线索"
    findings = book["违规发现"]
    assert findings.max_row == 1 + len(INSTITUTIONS) and findings.freeze_panes == "A2"


def test_csv_is_utf8_with_bom_and_chinese_headers(world):
    result = export(world, "c", fmt="csv")
    raw = result.list_path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:12] == EXPECTED_HEADERS
    by_name = {row[1]: dict(zip(rows[0], row)) for row in rows[1:]}
    assert set(by_name) == {name for name, *_ in INSTITUTIONS}
    row = by_name["明德学堂"]
    assert row["首次发现时间"] == "2026-03-02 10:02:00"
    assert row["微信"] == "mingde88" and row["证据文件数"] == "3"
    assert "《关于进一步减轻" in row["法律依据"] and "初中英语" in row["违规内容摘录"]


def test_json_mirrors_the_columns_with_nested_findings(world):
    result = export(world, "j", fmt="json")
    leads = json.loads(result.list_path.read_text(encoding="utf-8"))
    assert [lead["id"] for lead in leads] == result.lead_ids
    lead = next(item for item in leads if item["name"] == "博雅培优")
    for key in ("violation_types", "excerpts", "legal_basis", "urls", "first_seen", "last_seen", "phones",
                "wechat", "addresses", "status", "severity", "score", "finding_count", "evidence_count"):
        assert key in lead, key
    assert lead["first_seen"] == "2026-03-02T10:03:00+08:00"
    assert lead["phones"] == ["13712340003"] and lead["status"] == "new"
    assert lead["findings"][0]["text"] == "小学语文" and lead["findings"][0]["category"] == "banned_ad"
    assert {item["kind"] for item in lead["evidence"]} == {"warc", "screenshot", "text"}
    assert all(item["path"].startswith(lead["folder"] + "/") for item in lead["evidence"])


# ---------------------------------------------------------------- the package


def test_package_layout_manifest_and_evidence_copies(world):
    result = export(world, "p", wacz_builder=build_wacz)
    package = result.package.path
    names = names_in(package)
    assert names[-3:] == [MANIFEST_JSON, MANIFEST_SHA256, PACKAGE_SHA256]
    assert "说明.txt" in names and "线索清单.json" in names
    with zipfile.ZipFile(package) as archive:
        listing = archive.read(MANIFEST_SHA256)
        assert archive.read(PACKAGE_SHA256).decode() == f"{result.package.package_hash}  {MANIFEST_SHA256}\n"
        assert hashlib.sha256(listing).hexdigest() == result.package.package_hash
        listed = dict(line.split("  ", 1)[::-1] for line in listing.decode().splitlines())
        assert set(listed) == set(names) - {MANIFEST_SHA256, PACKAGE_SHA256}
        for name, sha in listed.items():
            assert hashlib.sha256(archive.read(name)).hexdigest() == sha, name
        manifest = json.loads(archive.read(MANIFEST_JSON))
        assert {item["path"] for item in manifest["files"]} == set(listed) - {MANIFEST_JSON}
        for name, lead_id in world["ids"].items():
            folder = next(n.split("/")[0] for n in names if n.startswith(f"线索-{lead_id:06d}-"))
            assert folder == f"线索-{lead_id:06d}-{name}"
            own = [n for n in names if n.startswith(folder + "/")]
            assert {n.rsplit("/", 1)[-1] for n in own} >= {"摘要.txt", "findings.json", "网页存档.warc",
                                                          "网页截图.png", "提取文本.txt"}
            assert any(n.endswith(".wacz") for n in own)
            summary = archive.read(f"{folder}/摘要.txt").decode()
            findings = json.loads(archive.read(f"{folder}/findings.json"))
            for item in findings["evidence"]:
                assert item["sha256"] in summary
                stored = world["data"] / "evidence" / "sha256" / item["sha256"][:2] / item["sha256"][2:4]
                original = next(stored.glob(item["sha256"] + ".*")).read_bytes()
                assert archive.read(item["path"]) == original
            assert name in summary and "法律依据" in summary and "2026-03-02" in summary
        wacz_name = next(n for n in names if n.endswith(".wacz"))
        with zipfile.ZipFile(io.BytesIO(archive.read(wacz_name))) as wacz:
            assert "datapackage.json" in wacz.namelist()
            assert any(n.startswith("archive/") and n.endswith(".warc") for n in wacz.namelist())


def test_same_export_twice_is_byte_identical(world):
    first = export(world, "one", wacz_builder=build_wacz)
    second = export(world, "two", wacz_builder=build_wacz)
    assert first.package.package_hash == second.package.package_hash
    assert first.package.path.read_bytes() == second.package.path.read_bytes()


def test_altered_evidence_file_stops_the_export(world):
    victim = next((world["data"] / "evidence").rglob("*.txt"))
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes() + "（后来加的）".encode())
    confirm(world["db"], world["ids"]["星火教育"])
    with pytest.raises(PackageError, match=victim.name):
        export(world, "bad", by="李四")
    assert not any((world["tmp"] / "bad").iterdir())
    with world["db"].session() as session:
        assert session.get(Lead, world["ids"]["星火教育"]).status == "confirmed"


# ---------------------------------------------------------------- verify


def test_verify_passes_untouched_and_names_changed_added_removed(world):
    package = export(world, "v").package.path
    assert verify_package(package).ok
    names = names_in(package)
    text_file = next(n for n in names if n.endswith("提取文本.txt"))
    screenshot = next(n for n in names if n.endswith("网页截图.png"))
    changed = rewrite(package, world["tmp"] / "changed.zip", replace={text_file: "篡改后的文字".encode()})
    added = rewrite(package, world["tmp"] / "added.zip", add={"线索-999999/补充.txt": b"extra"})
    removed = rewrite(package, world["tmp"] / "removed.zip", drop={screenshot})
    problems = {path.stem: verify_package(path).problems for path in (changed, added, removed)}
    assert len(problems["changed"]) == 1 and "被修改" in problems["changed"][0] and text_file in problems["changed"][0]
    assert problems["added"] == ["多出文件（不在清单中）：线索-999999/补充.txt"]
    assert problems["removed"] == [f"文件被删除：{screenshot}"]
    forged_listing = rewrite(package, world["tmp"] / "forged.zip", replace={
        MANIFEST_SHA256: b"0" * 64 + b"  x.txt\n"})
    assert any("包哈希不符" in p for p in verify_package(forged_listing).problems)


def test_verify_cli_exit_codes_and_messages(world):
    package = export(world, "cli").package.path
    good = run_cli("verify", str(package))
    assert good.code == 0 and "校验通过" in good.out, good.err
    removed = rewrite(package, world["tmp"] / "removed.zip", drop={"说明.txt"})
    bad = run_cli("verify", str(removed))
    assert bad.code == 1 and "文件被删除：说明.txt" in bad.out
    assert bad.err.startswith("错误：") and bad.err.count("\n") == 1
    garbage = world["tmp"] / "garbage.zip"
    garbage.write_bytes(b"not a zip at all")
    unreadable = run_cli("verify", str(garbage))
    assert unreadable.code == 1 and unreadable.err.startswith("错误：") and "garbage.zip" in unreadable.err
    wrong_hash = run_cli("verify", str(package), "--hash", "ab" * 32)
    assert wrong_hash.code == 1 and "包哈希与预期不符" in wrong_hash.out


# ---------------------------------------------------------------- hand-over to enforcement


def audit_rows(db: Database, action: str) -> list[AuditEvent]:
    with db.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def test_export_refers_confirmed_leads_once_with_audit(world):
    db, ids = world["db"], world["ids"]
    confirm(db, ids["星火教育"])
    confirm(db, ids["明德学堂"])
    result = export(world, "all", status="all", by="李四")
    assert sorted(result.referred) == sorted([ids["星火教育"], ids["明德学堂"]])
    assert len(result.lead_ids) == 3  # the new lead is exported too, but stays new
    with db.session() as session:
        statuses = {lead.name: lead.status for lead in session.scalars(select(Lead))}
    assert statuses == {"星火教育": "referred", "明德学堂": "referred", "博雅培优": "new"}
    rows = audit_rows(db, "refer")
    assert sorted(row.lead_id for row in rows) == sorted(result.referred)
    assert all(row.actor == "李四" and row.from_status == "confirmed" and row.to_status == "referred"
               for row in rows)
    assert all(row.details["package_sha256"] == result.package.package_hash for row in rows)
    assert export(world, "again", status="confirmed", by="李四").lead_ids == []
    again = export(world, "referred", status="referred", by="李四")
    assert sorted(again.lead_ids) == sorted(result.referred) and again.referred == []
    assert len(audit_rows(db, "refer")) == 2


def test_confirmed_export_needs_an_operator_and_a_fresh_directory(world):
    confirm(world["db"], world["ids"]["博雅培优"])
    with pytest.raises(ExportUsageError, match="--by"):
        export(world, "noby", status="confirmed")
    assert not (world["tmp"] / "noby").exists()
    export(world, "once", status="new")
    with pytest.raises(OutputExists, match="已存在"):
        export(world, "once", status="new")


def test_export_cli(world):
    if not world["url"].startswith("sqlite"):
        pytest.skip("the CLI path is the same for every database")
    confirm(world["db"], world["ids"]["星火教育"])
    out = world["tmp"] / "cli-out"
    env = {"XUNJIAN_DATA_DIR": str(world["data"])}
    missing_by = run_cli("export", "--out", str(out), "--db", world["url"], env=env)
    assert missing_by.code == 2 and missing_by.err.startswith("错误：缺少 --by") and missing_by.err.count("\n") == 1
    bad_format = run_cli("export", "--format", "pdf", "--out", str(out), "--db", world["url"])
    assert bad_format.code == 2 and bad_format.err.startswith("错误：") and bad_format.err.count("\n") == 1
    bad_date = run_cli("export", "--date", "2026-13-01", "--out", str(out), "--db", world["url"])
    assert bad_date.code == 2 and "--date" in bad_date.err
    no_out = run_cli("export", "--db", world["url"])
    assert no_out.code == 2 and "--out" in no_out.err
    done = run_cli("export", "--format", "csv", "--out", str(out), "--by", "李四", "--db", world["url"], env=env)
    assert done.code == 0, done.err
    printed = next(line for line in done.out.splitlines() if line.startswith("包哈希"))
    package_hash = printed.split("：", 1)[1].strip()
    assert verify_package(out / "证据包.zip", package_hash).ok
    assert (out / "线索清单.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert "已将 1 条已确认线索标记为“已移交”" in done.out
    nothing = run_cli("export", "--out", str(world["tmp"] / "empty"), "--by", "李四", "--db", world["url"], env=env)
    assert nothing.code == 0 and "没有符合条件的线索" in nothing.out
    exists = run_cli("export", "--status", "referred", "--format", "csv", "--out", str(out), "--db", world["url"],
                     env=env)
    assert exists.code == 1 and exists.err.startswith("错误：输出文件")


def test_missing_evidence_file_names_the_file_and_the_data_directory_hint(world, tmp_path):
    with pytest.raises(PackageError, match="不存在（数据目录是否正确？）"):
        export(world, "wrong-data", data_root=tmp_path / "elsewhere")
    assert not any((world["tmp"] / "wrong-data").iterdir())


def test_folder_names_are_safe_on_every_file_system():
    from storage.export.rows import LeadRow, folder_name

    row = LeadRow(42, "k", 'A/B:C*?"<>| 培训\n中心', "new", [], 1, 0.0, T0, T0)
    assert folder_name(row) == "线索-000042-A_B_C_______培训_中心"
    assert folder_name(LeadRow(7, "k", "", "new", [], 1, 0.0, T0, T0)) == "线索-000007"
