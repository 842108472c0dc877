"""``xunjian export`` and ``xunjian verify``: leads for enforcement and checking what was handed over.

Exit codes: 0 success (verify: every hash matches); 1 the work failed or was refused
(database unavailable, evidence file altered, output exists, package unreadable or
failing verification); 2 bad options. Errors are one line on stderr starting with 错误：.
"""

from __future__ import annotations

from datetime import date
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click

from crawler.cli_common import EXIT_BAD_INPUT as EXIT_USAGE
from crawler.cli_common import CliError as ExportCliError
from crawler.cli_common import OneLineCommand as OneLineErrors

STATUS_CHOICES = ("new", "reviewing", "confirmed", "dismissed", "referred", "closed", "reopened", "all")


def _generator() -> str:
    try:
        return f"xunjian {version('xunjian')}"
    except PackageNotFoundError:
        return "xunjian"


def _wacz_builder():
    """The WACZ builder of the evidence pipeline (its one-line errors name the file)."""
    from crawler.evidence.wacz import build_wacz

    return lambda warcs, out: build_wacz(warcs, out)


@click.command(cls=OneLineErrors)
@click.option("--status", type=click.Choice(STATUS_CHOICES), default="confirmed", show_default=True,
              help="Export leads in this state ('all' for any). Confirmed leads become 'referred'.")
@click.option("--date", "day", metavar="YYYY-MM-DD", help="Only leads with evidence on this day (Asia/Shanghai).")
@click.option("--format", "fmt", type=click.Choice(["xlsx", "csv", "json"]), default="xlsx", show_default=True,
              help="Format of the lead list.")
@click.option("--out", "out_dir", metavar="DIR", help="Output directory (required; must not hold an export yet).")
@click.option("--by", "by", metavar="NAME", help="Who exports (required when confirmed leads are referred).")
@click.option("--data-dir", metavar="DIR", help="Data directory with the evidence files (default $XUNJIAN_DATA_DIR or ./data).")
@click.option("--no-wacz", is_flag=True, help="Do not build a WACZ per lead.")
@click.option("--db", "db_url", metavar="URL",
              help="Database URL (default: $XUNJIAN_DB_URL, else sqlite:///./data/xunjian.db).")
def export(status: str, day: str | None, fmt: str, out_dir: str | None, by: str | None, data_dir: str | None,
           no_wacz: bool, db_url: str | None) -> None:
    """Export leads for enforcement: lead list (xlsx/csv/json) plus a verifiable evidence package."""
    from crawler.db import database_for
    from storage.errors import StorageError
    from storage.export.run import ExportUsageError, run_export
    from storage.workflow import status_name

    parsed: date | None = None
    if day is not None:
        try:
            parsed = date.fromisoformat(day)
        except ValueError:
            raise ExportCliError(f"--date 应为 YYYY-MM-DD 格式的日期，实际为 {day!r}", EXIT_USAGE) from None
    if not out_dir:
        raise ExportCliError("缺少 --out：请给出输出目录", EXIT_USAGE)
    try:
        db = database_for(db_url)
        result = run_export(db, out_dir=Path(out_dir), fmt=fmt, status=status, day=parsed, by=by,
                            data_root=data_dir, wacz_builder=None if no_wacz else _wacz_builder(),
                            generator=_generator())
    except ExportUsageError as exc:
        raise ExportCliError(str(exc), EXIT_USAGE) from None
    except StorageError as exc:
        raise ExportCliError(str(exc)) from None
    label = "全部状态" if status == "all" else status_name(status)
    if not result.lead_ids:
        click.echo(f"没有符合条件的线索（状态：{label}{'，日期 ' + day if day else ''}），未生成文件。")
        return
    package = result.package
    click.echo(f"已导出 {len(result.lead_ids)} 条线索（状态：{label}）。")
    click.echo(f"线索清单：{result.list_path}")
    click.echo(f"证据包：{package.path}（{package.files} 个文件，其中证据文件 {package.evidence_files} 个）")
    click.echo(f"包哈希（SHA-256）：{package.package_hash}")
    if result.referred:
        click.echo(f"已将 {len(result.referred)} 条已确认线索标记为“已移交”（操作人：{by.strip()}）。")


@click.command(cls=OneLineErrors)
@click.argument("package", metavar="PACKAGE")
@click.option("--hash", "expected", metavar="SHA256", help="The package hash printed at export time, to compare too.")
def verify(package: str, expected: str | None) -> None:
    """Re-check every file of an evidence package against its manifest."""
    from storage.errors import StorageError
    from storage.export.verify import PackageUnreadable, verify_package

    try:
        result = verify_package(package, expected)
    except PackageUnreadable as exc:
        raise ExportCliError(str(exc)) from None
    except StorageError as exc:
        raise ExportCliError(str(exc), EXIT_USAGE) from None
    for problem in result.problems:
        click.echo(problem)
    if result.problems:
        raise ExportCliError(f"校验未通过：{package} 发现 {len(result.problems)} 处问题")
    click.echo(f"校验通过：{result.files} 个文件与清单一致，包哈希 {result.package_hash}")
