"""Evidence pieces without a crawl: the content-addressed store, WARC records of decoded bodies, the
screenshot error, evidence rows in store_batch and the "already archived" lookup."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from crawler.evidence.warc import HttpExchange, warc_bytes
from storage.db import open_database
from storage.evidence import EvidenceStore, verify_file
from storage.models import Evidence
from storage.records import PageRecord
from tests.test_evidence import warc_records_from


def test_tampering_is_detected_and_files_are_written_once(tmp_path):
    store = EvidenceStore(tmp_path)
    record, written = store.put("证据文本".encode("utf-8"), kind="text", ext="txt", media_type="text/plain")
    path = store.absolute(record.path)
    assert written and verify_file(path, record.sha256)
    before = path.stat().st_mtime_ns
    again, written_again = store.put("证据文本".encode("utf-8"), kind="text", ext="txt", media_type="text/plain")
    assert not written_again and again.path == record.path and path.stat().st_mtime_ns == before
    assert not list(path.parent.glob(".partial-*"))
    path.chmod(0o644)
    path.write_bytes("证据文本!".encode("utf-8"))
    assert not verify_file(path, record.sha256)
    path.unlink()
    assert not verify_file(path, record.sha256)


def test_decoded_bodies_are_stored_with_headers_that_fit_them():
    from datetime import datetime, timezone

    body = "<p>解压后的正文</p>".encode("utf-8")
    exchange = HttpExchange(
        url="http://127.0.0.1:1/a.html", requested_url="http://127.0.0.1:1/a.html", method="GET",
        protocol="HTTP/1.1", request_headers=[("Accept", "*/*")], status=200,
        response_headers=[("Content-Type", "text/html; charset=utf-8"), ("Content-Encoding", "gzip"),
                          ("Transfer-Encoding", "chunked"), ("Content-Length", "999")],
        body=body, fetched_at=datetime.now(timezone.utc), decoded_content=True,
    )
    records = warc_records_from(warc_bytes(exchange, "test"))
    _, _, http, payload = records[2]
    assert payload == body  # warcio would try to gunzip/de-chunk it if the headers still claimed so
    assert http.get_header("Content-Encoding") is None and http.get_header("X-Xunjian-Orig-Content-Encoding") == "gzip"
    assert http.get_header("X-Xunjian-Orig-Content-Length") == "999"


def test_unusable_browser_raises_a_one_line_screenshot_error(tmp_path):
    import asyncio

    from crawler.evidence.screenshot import ScreenshotError, Screenshotter

    url = "http://127.0.0.1:1/page.html"  # never fetched: the screenshot shows the crawled document

    async def attempt() -> str:
        shooter = Screenshotter(str(tmp_path / "no-such-chromium"), timeout=20)
        try:
            await shooter.capture(url, "<p>x</p>")
        except ScreenshotError as error:
            return str(error)
        finally:
            await shooter.close()
        return ""

    message = asyncio.run(attempt())
    assert message.startswith("截图失败：") and url in message and "\n" not in message


def _record(url: str, evidence: list) -> PageRecord:
    from datetime import datetime, timezone

    return PageRecord(
        source="s", url=url, requested_url=url, final_url=url, fetched_at=datetime.now(timezone.utc), status=200,
        headers={}, encoding="utf-8", title="t", text="x", fields={}, image_urls=[], content_hash="a" * 64,
        categories=[], score=0.0, rules_version="r", evidence=evidence,
    )


def test_store_batch_adds_missing_kinds_once_and_rejects_bad_rows(tmp_path):
    from storage.errors import StorageError
    from storage.repository import store_batch

    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    store = EvidenceStore(tmp_path / "data")
    text, _ = store.put(b"x", kind="text", ext="txt", media_type="text/plain; charset=utf-8")
    warc, _ = store.put(b"WARC", kind="warc", ext="warc", media_type="application/warc")
    url = "http://127.0.0.1:1/p.html"
    store_batch(db, None, [_record(url, [text])])
    store_batch(db, None, [_record(url, [text, warc])])  # same snapshot: only the missing kind is added
    with db.session() as s:
        rows = sorted((r.kind, r.sha256) for r in s.scalars(select(Evidence)))
    assert rows == [("text", text.sha256), ("warc", warc.sha256)]
    bad = type(text)(kind="video", sha256=text.sha256, path=text.path, size=1, media_type="x", captured_at=text.captured_at)
    with pytest.raises(StorageError, match="证据类型 'video' 无效"):
        store_batch(db, None, [_record(url, [bad])])
    db.dispose()


def test_snapshot_has_evidence_tells_stored_archived_and_unknown(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from storage.evidence import snapshot_has_evidence
    from storage.repository import store_batch
    from tests.test_storage import finding, page

    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        plain = page("https://a.example/plain", "小升初 13800000001", findings=[finding()])
        archived = page("https://a.example/archived", "初二数学 13800000002", findings=[finding()])
        record, _ = EvidenceStore(tmp_path / "data").put(b"text", kind="text", ext="txt", media_type="text/plain",
                                                         captured_at=datetime(2026, 3, 2, tzinfo=timezone.utc))
        archived.evidence = [record]
        store_batch(db, None, [plain, archived])
        assert snapshot_has_evidence(db, plain.url, plain.content_hash) is False
        assert snapshot_has_evidence(db, archived.url, archived.content_hash) is True
        assert snapshot_has_evidence(db, archived.url, plain.content_hash) is None
        assert snapshot_has_evidence(db, "https://a.example/none", plain.content_hash) is None
    finally:
        db.dispose()
