"""The lead list for enforcement as xlsx, csv or json.

Columns carry Chinese headers (see ``COLUMNS``); json uses the English keys of the
same columns plus the nested findings and evidence files. Times are Beijing time:
naive datetimes with a number format in xlsx (Excel has no time zones),
``YYYY-MM-DD HH:MM:SS`` in csv and ISO 8601 with +08:00 in json.

Cells hold text written by the pages' authors, so no cell may become a formula
(OWASP "CSV injection"): text starting with a formula trigger (``formula_like``) is
prefixed with ``'`` in csv; in xlsx every text cell has the explicit string type and
formula-like ones the quote prefix, so Excel shows the text unchanged and keeps it
text even when the cell is edited. json stays verbatim.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from storage.export.rows import EvidenceFile, FindingRow, LeadRow, category_name, folder_name
from storage.identifiers import KIND_NAMES
from storage.workflow import status_name

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
DATE_FORMAT = "yyyy-mm-dd hh:mm:ss"
EXCEL_CELL_LIMIT = 32767
FORMATS = ("xlsx", "csv", "json")
OTHER_ID_KINDS = ("uscc", "license", "qq")
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Column:
    header: str
    key: str
    width: int
    wrap: bool = False
    number_format: str | None = None


COLUMNS = (
    Column("线索编号", "id", 10),
    Column("机构名称", "name", 26, wrap=True),
    Column("违规类型", "violation_types", 22, wrap=True),
    Column("违规内容摘录", "excerpts", 50, wrap=True),
    Column("法律依据", "legal_basis", 44, wrap=True),
    Column("网址", "urls", 46, wrap=True),
    Column("首次发现时间", "first_seen", 20, number_format=DATE_FORMAT),
    Column("最近发现时间", "last_seen", 20, number_format=DATE_FORMAT),
    Column("联系电话", "phones", 16, wrap=True),
    Column("微信", "wechat", 16, wrap=True),
    Column("地址", "addresses", 30, wrap=True),
    Column("状态", "status", 10),
    Column("严重程度", "severity", 9),
    Column("评分", "score", 8, number_format="0.00"),
    Column("发现条数", "finding_count", 9),
    Column("网页数", "page_count", 8),
    Column("证据文件数", "evidence_count", 11),
    Column("其他标识", "other_ids", 30, wrap=True),
    Column("规则包版本", "rules_versions", 16, wrap=True),
    Column("证据目录", "folder", 30, wrap=True),
)
HEADERS = [column.header for column in COLUMNS]

FINDING_COLUMNS = (
    Column("线索编号", "lead_id", 10),
    Column("机构名称", "name", 24, wrap=True),
    Column("网址", "url", 40, wrap=True),
    Column("抓取时间", "fetched_at", 20, number_format=DATE_FORMAT),
    Column("违规类型", "category_name", 20, wrap=True),
    Column("规则", "rule", 22, wrap=True),
    Column("严重程度", "severity", 9),
    Column("违规原文", "text", 30, wrap=True),
    Column("上下文", "context", 60, wrap=True),
    Column("说明", "explanation", 40, wrap=True),
    Column("法律依据", "basis", 44, wrap=True),
)


def local(value: datetime) -> datetime:
    return value.astimezone(LOCAL_TZ)


def local_text(value: datetime) -> str:
    return local(value).strftime("%Y-%m-%d %H:%M:%S")


def other_ids(row: LeadRow) -> dict[str, list[str]]:
    return {kind: row.ids(kind) for kind in OTHER_ID_KINDS if row.ids(kind)}


def lead_record(row: LeadRow) -> dict[str, Any]:
    """One lead as typed values keyed by column key (lists stay lists, times stay aware)."""
    return {
        "id": row.id,
        "name": row.name,
        "violation_types": [category_name(c) for c in row.categories],
        "excerpts": row.excerpts(),
        "legal_basis": row.bases,
        "urls": row.urls,
        "first_seen": row.first_seen,
        "last_seen": row.last_seen,
        "phones": row.ids("phone"),
        "wechat": row.ids("wechat"),
        "addresses": row.ids("address"),
        "status": row.status,
        "severity": row.severity,
        "score": round(row.score, 4),
        "finding_count": row.finding_count,
        "page_count": len(row.urls),
        "evidence_count": len(row.evidence),
        "other_ids": other_ids(row),
        "rules_versions": row.rules_versions,
        "folder": folder_name(row),
    }


def formula_like(value: Any) -> bool:
    """Text a spreadsheet program would evaluate as a formula when it opens the file."""
    return isinstance(value, str) and value.startswith(FORMULA_TRIGGERS)


_JOINERS = {"excerpts": "；", "phones": "、", "wechat": "、", "violation_types": "、"}


def cell_text(key: str, value: Any) -> Any:
    """A record value as one spreadsheet cell (text for lists, Chinese status names)."""
    if key == "status":
        return status_name(value)
    if key == "other_ids":
        return "\n".join(f"{KIND_NAMES.get(kind, kind)}：{'、'.join(values)}" for kind, values in value.items())
    if isinstance(value, list):
        return _JOINERS.get(key, "\n").join(value)
    return value


def finding_dict(finding: FindingRow) -> dict[str, Any]:
    return {
        "id": finding.id,
        "snapshot_id": finding.snapshot_id,
        "url": finding.url,
        "fetched_at": local(finding.fetched_at).isoformat(),
        "category": finding.category,
        "category_name": category_name(finding.category),
        "subcategory": finding.subcategory,
        "rule": finding.rule,
        "severity": finding.severity,
        "text": finding.text,
        "normalized": finding.normalized,
        "start": finding.start,
        "end": finding.end,
        "before": finding.before,
        "after": finding.after,
        "explanation": finding.explanation,
        "basis": finding.basis,
        "rules_version": finding.rules_version,
    }


def evidence_dict(item: EvidenceFile, path_in_package: str | None = None) -> dict[str, Any]:
    return {
        "snapshot_id": item.snapshot_id,
        "kind": item.kind,
        "sha256": item.sha256,
        "size": item.size,
        "media_type": item.media_type,
        "captured_at": local(item.captured_at).isoformat(),
        "path": path_in_package,
    }


def lead_json(row: LeadRow, evidence_paths: dict[tuple[int, str], str] | None = None) -> dict[str, Any]:
    record = lead_record(row)
    record["first_seen"] = local(row.first_seen).isoformat()
    record["last_seen"] = local(row.last_seen).isoformat()
    record["status_name"] = status_name(row.status)
    record["categories"] = list(row.categories)
    record["findings"] = [finding_dict(f) for f in row.findings]
    paths = evidence_paths or {}
    record["evidence"] = [evidence_dict(e, paths.get((e.snapshot_id, e.kind))) for e in row.evidence]
    return record


def json_bytes(rows: list[LeadRow], evidence_paths: dict[tuple[int, str], str] | None = None) -> bytes:
    data = [lead_json(row, evidence_paths) for row in rows]
    return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def csv_bytes(rows: list[LeadRow]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADERS)
    for row in rows:
        record = lead_record(row)
        cells = []
        for column in COLUMNS:
            value = record[column.key]
            if isinstance(value, datetime):
                value = local_text(value)
            elif column.key == "score":
                value = f"{value:.2f}"
            text = cell_text(column.key, value)
            cells.append(f"'{text}" if formula_like(text) else text)
        writer.writerow(cells)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _excel_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return local(value).replace(tzinfo=None)
    if isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("", value)
        return value if len(value) <= EXCEL_CELL_LIMIT else value[: EXCEL_CELL_LIMIT - 1] + "…"
    return value


def _sheet(workbook: Workbook, title: str, columns: tuple[Column, ...], records: list[dict[str, Any]],
           first: bool) -> None:
    sheet = workbook.active if first else workbook.create_sheet()
    sheet.title = title
    sheet.append([column.header for column in columns])
    bold = Font(bold=True)
    for cell in sheet[1]:
        cell.font = bold
        cell.alignment = Alignment(vertical="center")
    wrap = Alignment(wrap_text=True, vertical="top")
    top = Alignment(vertical="top")
    for record in records:
        sheet.append([_excel_value(cell_text(c.key, record[c.key])) for c in columns])
        for column, cell in zip(columns, sheet[sheet.max_row]):
            cell.alignment = wrap if column.wrap else top
            if column.number_format:
                cell.number_format = column.number_format
            if isinstance(cell.value, str):  # openpyxl infers formulas and error codes from text
                cell.data_type = "s"
                cell.quotePrefix = formula_like(cell.value)
    for index, column in enumerate(columns, 1):
        sheet.column_dimensions[get_column_letter(index)].width = column.width
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{max(1, sheet.max_row)}"


def _finding_records(rows: list[LeadRow]) -> list[dict[str, Any]]:
    records = []
    for row in rows:
        for f in row.findings:
            records.append({
                "lead_id": row.id, "name": row.name, "url": f.url, "fetched_at": f.fetched_at,
                "category_name": category_name(f.category), "rule": f.rule, "severity": f.severity,
                "text": f.text, "context": f"…{f.before}【{f.text}】{f.after}…", "explanation": f.explanation,
                "basis": f.basis,
            })
    return records


def write_xlsx(rows: list[LeadRow], path: Path) -> None:
    workbook = Workbook()
    _sheet(workbook, "线索清单", COLUMNS, [lead_record(row) for row in rows], first=True)
    _sheet(workbook, "违规发现", FINDING_COLUMNS, _finding_records(rows), first=False)
    workbook.save(path)


def write_list(rows: list[LeadRow], fmt: str, path: Path) -> None:
    """Write the lead list in ``fmt`` (xlsx, csv or json) to ``path``."""
    if fmt == "xlsx":
        write_xlsx(rows, path)
    elif fmt == "csv":
        path.write_bytes(csv_bytes(rows))
    elif fmt == "json":
        path.write_bytes(json_bytes(rows))
    else:
        raise ValueError(f"未知的导出格式 {fmt!r}（可用：{'、'.join(FORMATS)}）")
