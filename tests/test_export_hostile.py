"""Exports of hostile content: formulas in cells, and evidence packages forged to escape or confuse.

Lead lists are written from leads stored through the real storage API (``page_record``
of tests.test_export) and reopened with openpyxl and the csv module. Packages are real
exports, then altered the way a forger would (the manifest and package hash
recomputed so the hashes match) and checked with the real ``xunjian verify`` CLI.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest

from storage.db import open_database
from storage.evidence import EvidenceStore
from storage.export.package import MANIFEST_SHA256, PACKAGE_SHA256, package_hash_line
from storage.export.rows import LeadRow
from storage.export.run import run_export
from storage.export.writers import csv_bytes
from storage.repository import store_batch
from tests.conftest import run_cli
from tests.test_export import T0, page_record

HOSTILE = ['=HYPERLINK("http://127.0.0.1/x","点击查看")', "+1+1", "-2+3", "@SUM(A1)", "\t=1"]


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[dict]:
    """One lead per hostile text, used as page title (institution name) and as the matched excerpt."""
    db = open_database(f"sqlite:///{tmp_path / 'xunjian.db'}")
    store = EvidenceStore(tmp_path / "data")
    store_batch(db, None, [page_record(store, n, text, f"1381234000{n}", f"wx{n}abc", text)
                           for n, text in enumerate(HOSTILE, 1)])
    try:
        yield {"db": db, "data": tmp_path / "data", "tmp": tmp_path}
    finally:
        db.dispose()


def export(world: dict, out: str, fmt: str):
    return run_export(world["db"], out_dir=world["tmp"] / out, fmt=fmt, status="all", data_root=world["data"],
                      generator="xunjian-test", wacz_builder=None)


# ---------------------------------------------------------------- formulas


def test_xlsx_stores_formula_like_text_as_text_unchanged(hostile):
    book = openpyxl.load_workbook(export(hostile, "x", "xlsx").list_path)
    cells = [cell for sheet in book for row in sheet.iter_rows() for cell in row]
    assert not [cell.coordinate for cell in cells if cell.data_type == "f"]
    texts = {cell.value for cell in cells if cell.data_type == "s"}
    assert set(HOSTILE) <= texts  # the findings sheet keeps the tab of "\t=1" too
    leads = book["线索清单"]
    names = [row[1] for row in leads.iter_rows(min_row=2)]
    assert {cell.value for cell in names} == {text.strip() for text in HOSTILE}
    assert all(cell.quotePrefix for cell in names)  # stays text when an officer edits the cell
    assert not any(cell.quotePrefix for cell in leads[1])


def test_csv_prefixes_formula_like_text_with_a_quote(hostile):
    rows = list(csv.reader(io.StringIO(export(hostile, "c", "csv").list_path.read_text(encoding="utf-8-sig"))))
    by_name = {row[1]: dict(zip(rows[0], row)) for row in rows[1:]}
    assert set(by_name) == {"'" + text.strip() for text in HOSTILE}
    link = by_name["'" + HOSTILE[0]]
    assert link["违规内容摘录"] == "'" + HOSTILE[0]
    assert link["联系电话"] == "13812340001"  # ordinary cells untouched
    for start in ("\t", "\r"):
        row = LeadRow(9, "k", f"{start}=1+1", "new", [], 1, 0.0, T0, T0)
        written = list(csv.reader(io.StringIO(csv_bytes([row]).decode("utf-8-sig"), newline="")))
        assert written[1][1] == f"'{start}=1+1"


def test_json_keeps_the_text_verbatim(hostile):
    text = export(hostile, "j", "json").list_path.read_text(encoding="utf-8")
    assert '"name": "+1+1"' in text and "\"'" not in text


# ---------------------------------------------------------------- forged packages


def forge(package: Path, target: Path, extra: list[tuple[str | zipfile.ZipInfo, bytes]],
          listed: list[str] = ()) -> Path:
    """``package`` plus ``extra`` entries, with a manifest and package hash recomputed to match them all.

    ``listed`` adds manifest lines for names that are not in the zip."""
    with zipfile.ZipFile(package) as source:
        kept = [(info, source.read(info)) for info in source.infolist()
                if info.filename not in (MANIFEST_SHA256, PACKAGE_SHA256)]
        listing = source.read(MANIFEST_SHA256).decode()
    for entry, data in extra:
        name = entry.filename if isinstance(entry, zipfile.ZipInfo) else entry
        listing += f"{hashlib.sha256(data).hexdigest()}  {name}\n"
    listing += "".join(f"{'0' * 64}  {name}\n" for name in listed)
    with zipfile.ZipFile(target, "w") as out:
        for entry, data in [*kept, *extra]:
            out.writestr(entry, data)
        out.writestr(MANIFEST_SHA256, listing)
        out.writestr(PACKAGE_SHA256, package_hash_line(hashlib.sha256(listing.encode()).hexdigest()))
    return target


def patch_headers(path: Path, name: str, *, flags: int = 0, method: int | None = None) -> None:
    """Set flag bits or the compression method of entry ``name`` in its local and central headers."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    for signature, flags_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        at = data.find(signature)
        while at >= 0:
            if data[at + name_at:at + name_at + len(encoded)] == encoded:
                data[at + flags_at] |= flags
                if method is not None:
                    data[at + flags_at + 2:at + flags_at + 4] = method.to_bytes(2, "little")
            at = data.find(signature, at + 1)
    path.write_bytes(bytes(data))


def nul_named(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("placeholder")
    info.filename = name  # ZipInfo() cuts names at NUL; a forger writes the bytes anyway
    return info


@pytest.fixture
def package(hostile) -> Path:
    return export(hostile, "p", "json").package.path


UNSAFE = [
    ("dotdot", "../evil.txt", "文件名含“..”路径段：../evil.txt"),
    ("nested-dotdot", "线索-000001/../../evil.txt", "文件名含“..”路径段：线索-000001/../../evil.txt"),
    ("absolute", "/etc/cron.d/evil", "文件名是绝对路径：/etc/cron.d/evil"),
    ("backslash", "..\\..\\evil.txt", "文件名含反斜杠：..\\..\\evil.txt"),
    ("drive", "C:/Windows/evil.txt", "文件名含盘符：C:/Windows/evil.txt"),
    ("drive-relative", "c:evil.txt", "文件名含盘符：c:evil.txt"),
    ("nul", nul_named("evil.txt\x00.png"), "文件名含 NUL 字符：evil.txt\\x00.png"),
]


def refusal(result, forged: Path, message: str) -> None:
    assert result.code == 1 and result.out == "", result.out[:500]
    assert result.err == f"错误：拒绝校验证据包 {forged}：{message}\n"


def test_a_forged_entry_with_a_safe_name_passes_so_the_refusals_below_are_about_names(package, tmp_path):
    result = run_cli("verify", str(forge(package, tmp_path / "safe.zip", [("附件/补充.txt", b"ok")])))
    assert result.code == 0 and "校验通过" in result.out, result.err


@pytest.mark.parametrize("entry, message", [case[1:] for case in UNSAFE], ids=[case[0] for case in UNSAFE])
def test_verify_refuses_unsafe_entry_names_whatever_the_manifest_says(package, tmp_path, entry, message):
    forged = forge(package, tmp_path / "forged.zip", [(entry, b"evil")])
    refusal(run_cli("verify", str(forged)), forged, message)


def test_verify_refuses_names_that_clash_exactly_or_by_case(package, tmp_path):
    with pytest.warns(UserWarning, match="Duplicate name"):
        appended = forge(package, tmp_path / "dup.zip", [("说明.txt", "伪造的说明".encode())])
    refusal(run_cli("verify", str(appended)), appended, "文件名重复（可能被追加）：说明.txt")
    cased = forge(package, tmp_path / "case.zip", [("附件/README.txt", b"a"), ("附件/readme.TXT", b"b")])
    refusal(run_cli("verify", str(cased)), cased, "文件名与 附件/README.txt 仅大小写或写法不同：附件/readme.TXT")


def test_verify_refuses_encrypted_entries_and_unknown_compression_in_one_line(package, tmp_path):
    encrypted = forge(package, tmp_path / "encrypted.zip", [("附件/密.txt", b"secret")])
    patch_headers(encrypted, "附件/密.txt", flags=0x1)
    refusal(run_cli("verify", str(encrypted)), encrypted, "文件已加密，无法校验：附件/密.txt")
    ppmd = forge(package, tmp_path / "ppmd.zip", [("附件/压缩.txt", b"data")])
    patch_headers(ppmd, "附件/压缩.txt", method=98)
    refusal(run_cli("verify", str(ppmd)), ppmd, "文件使用了不支持的压缩方式（编号 98）：附件/压缩.txt")


def test_huge_and_control_character_names_are_shortened_and_escaped(package, tmp_path):
    forged = forge(package, tmp_path / "huge.zip", [], listed=["x" * 50_000_000])
    with zipfile.ZipFile(forged, "a") as archive:
        archive.writestr("附件/未列出\n\x1b[31m.txt", b"y")
    result = run_cli("verify", str(forged))
    assert result.code == 1 and result.err.startswith("错误：校验未通过") and result.err.count("\n") == 1
    assert result.out.splitlines() == [
        f"文件被删除：{'x' * 200}…（共 50000000 个字符）",
        "多出文件（不在清单中）：附件/未列出\\n\\x1b[31m.txt",
    ]
    deep = "../" + "x" * 60_000
    escaping = forge(package, tmp_path / "deep.zip", [(deep, b"x")])
    refusal(run_cli("verify", str(escaping)), escaping, f"文件名含“..”路径段：{deep[:200]}…（共 60003 个字符）")
