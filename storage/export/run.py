"""One export end to end: select leads, write the list and the evidence package, refer confirmed leads.

Confirmed leads in the export move to ``referred`` through ``storage.workflow.mark_referred``
(one audit row each, naming the package and its hash) only after both files are
written; if that fails the files are removed again, so a package on disk always
matches the audit trail. Leads in other states are exported as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from storage.db import Database
from storage.errors import StorageError
from storage.export.package import PackageResult, WaczBuilder, build_package, evidence_path
from storage.export.rows import LeadRow, load_rows, select_lead_ids
from storage.export.writers import json_bytes, write_list
from storage.views import DEFAULT_TZ
from storage.workflow import mark_referred

LIST_NAME = "线索清单"
PACKAGE_NAME = "证据包.zip"
REFER_REASON = "导出线索清单与证据包，移交执法"


class ExportUsageError(StorageError):
    """The export cannot start as asked (missing operator name)."""


class OutputExists(StorageError):
    """The output directory already holds an export; nothing is overwritten."""


@dataclass
class ExportResult:
    lead_ids: list[int]
    list_path: Path | None = None
    package: PackageResult | None = None
    referred: list[int] = field(default_factory=list)


def output_paths(out_dir: Path, fmt: str) -> tuple[Path, Path]:
    return out_dir / f"{LIST_NAME}.{fmt}", out_dir / PACKAGE_NAME


def _write_list(rows: list[LeadRow], fmt: str, path: Path) -> None:
    partial = path.with_name(f".partial-{os.getpid()}-{path.name}")
    try:
        if fmt == "json":
            paths = {(e.snapshot_id, e.kind): evidence_path(row, e.snapshot_id, e.kind, e.path)
                     for row in rows for e in row.evidence}
            partial.write_bytes(json_bytes(rows, paths))
        else:
            write_list(rows, fmt, partial)
        os.replace(partial, path)
    except OSError as error:
        raise StorageError(f"无法写入线索清单 {path}（{error.strerror or error}）") from None
    finally:
        partial.unlink(missing_ok=True)


def run_export(
    db: Database,
    *,
    out_dir: Path,
    fmt: str,
    status: str | None = "confirmed",
    day: date | None = None,
    by: str | None = None,
    data_root: str | os.PathLike[str] | None = None,
    wacz_builder: WaczBuilder | None = None,
    generator: str = "xunjian",
    tz: str = DEFAULT_TZ,
) -> ExportResult:
    """Export the selected leads to ``out_dir``; returns what was written and which leads were referred."""
    ids = select_lead_ids(db, status=status, day=day, tz=tz)
    if not ids:
        return ExportResult([])
    rows = load_rows(db, ids, data_root)
    to_refer = [row.id for row in rows if row.status == "confirmed"]
    if to_refer and not (by or "").strip():
        raise ExportUsageError(
            f"缺少 --by：导出会把 {len(to_refer)} 条已确认线索移交执法，请写明操作人姓名"
        )
    list_path, package_path = output_paths(out_dir, fmt)
    for path in (list_path, package_path):
        if path.exists():
            raise OutputExists(f"输出文件 {path} 已存在，不会覆盖；请换一个输出目录")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StorageError(f"无法创建输出目录 {out_dir}（{error.strerror or error}）") from None
    selection = {"status": status or "all", "date": day.isoformat() if day else None}
    _write_list(rows, fmt, list_path)
    try:
        package = build_package(rows, package_path, selection=selection, generator=generator,
                                wacz_builder=wacz_builder)
        referred: list[int] = []
        if to_refer:
            details = {"package": str(package_path.absolute()), "package_sha256": package.package_hash,
                       "list": str(list_path.absolute()), "format": fmt, "leads": len(rows)}
            referred = mark_referred(db, to_refer, by or "", REFER_REASON, details)
    except BaseException:
        list_path.unlink(missing_ok=True)
        package_path.unlink(missing_ok=True)
        raise
    return ExportResult(ids, list_path, package, referred)
