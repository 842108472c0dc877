"""The ``xunjian`` command line.

Exit codes: 0 success; 1 the work failed (database unavailable, start URL unreachable); 2 bad input or
usage (invalid sources file, unknown source, bad option).  Errors are one line on stderr.
"""

from __future__ import annotations

import os
import sys
from datetime import date, datetime
from pathlib import Path

import click

from crawler.cli_leads import daily, lead, review
from crawler.detect_cli import detect
from crawler.cli_export import export, verify
from crawler.cli_ops import canary, runs, schedule, status
from crawler.rules_cli import rules
from crawler.model_cli import model
from crawler.console import leads_csv, leads_json, leads_table, make_console, summary_table
from crawler.sources import DEFAULT_SOURCES_FILE, SourcesError, find_source, load_sources

from crawler.cli_common import EXIT_BAD_INPUT, CliError, keep_private
from crawler.cli_common import db_option as _db_option
from crawler.cli_common import open_db as _open_db


def _load(path: str | None, names: tuple[str, ...] = ()):
    try:
        sources = load_sources(path)
        return [find_source(sources, n) for n in names] if names else sources
    except SourcesError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None


def _log_file() -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(os.environ.get("XUNJIAN_DATA_DIR", "data")) / "logs" / f"crawl-{stamp}-{os.getpid()}.log"


def _crawl(sources, db, console):
    from crawler.runner import CrawlSetupError, run_crawl

    log_file = _log_file()
    try:
        outcomes = run_crawl(sources, db.url, log_file=log_file, console=make_console(stderr=True))
    except CrawlSetupError as exc:
        raise CliError(str(exc)) from None
    console.print(summary_table(outcomes))
    failed = [o for o in outcomes if o.failure]
    if failed:
        more = f"（另有 {len(failed) - 1} 个来源也出错）" if len(failed) > 1 else ""
        raise CliError(f"来源 \"{failed[0].source.name}\" 抓取出错：{failed[0].failure}{more}（详见日志 {log_file}）")
    unreachable = [(o.source.name, u) for o in outcomes for u in o.unreachable]
    if unreachable:
        name, url = unreachable[0]
        more = f"（另有 {len(unreachable) - 1} 个起始网址也无法访问）" if len(unreachable) > 1 else ""
        raise CliError(f"来源 \"{name}\" 的起始网址无法访问：{url}{more}")
    return outcomes


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="xunjian")
def main() -> None:
    """xunjian (巡检): patrol tutoring ads, flag rule-breaking ones, keep leads and evidence."""
    keep_private()


@main.command()
@click.option("--sources", "sources_path", metavar="FILE", help=f"Sources file (default ./{DEFAULT_SOURCES_FILE}).")
@click.option("--source", "names", multiple=True, metavar="NAME", help="Crawl only this source (repeatable).")
@_db_option
def crawl(sources_path: str | None, names: tuple[str, ...], db_url: str | None) -> None:
    """Crawl the configured sources once and store pages, findings and leads."""
    sources = _load(sources_path, names)
    db = _open_db(db_url)
    console = make_console()
    outcomes = _crawl(sources, db, console)
    total = sum(o.new_leads for o in outcomes)
    console.print(f"共抓取 {sum(o.pages for o in outcomes)} 个页面，新发现 "
                  f"{sum(o.new_findings for o in outcomes)} 条，新线索 {total} 条。")


def _parse_day(ctx, param, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"应为 YYYY-MM-DD 格式的日期，实际为 {value!r}") from None


@main.command()
@click.option("--date", "day", callback=_parse_day, metavar="YYYY-MM-DD",
              help="Leads with evidence on this day (Asia/Shanghai); default today.")
@click.option("--all", "all_", is_flag=True, help="All leads, whatever the day.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@_db_option
def leads(day: date | None, all_: bool, fmt: str, db_url: str | None) -> None:
    """Print the flagged list: leads, most serious first."""
    if day and all_:
        raise CliError("--date 与 --all 不能同时使用", EXIT_BAD_INPUT)
    from storage.repository import list_leads

    db = _open_db(db_url)
    rows = list_leads(db, day=day, all=all_)
    _print_leads(rows, fmt, day, all_)


def _print_leads(rows, fmt: str, day: date | None, all_: bool) -> None:
    if fmt == "json":
        click.echo(leads_json(rows))
        return
    if fmt == "csv":
        sys.stdout.write(leads_csv(rows))
        return
    from crawler.console import LOCAL_TZ

    label = "全部线索" if all_ else f"{(day or datetime.now(LOCAL_TZ).date()).isoformat()} 巡查线索"
    console = make_console()
    if not rows:
        console.print(f"{label}：没有需要处理的线索。")
        return
    console.print(leads_table(rows, f"{label}（共 {len(rows)} 条，按严重程度排序）"))


@main.command()
@click.option("--port", default=0, show_default=True, help="Port for the demo site (0 = any free port).")
@_db_option
def demo(port: int, db_url: str | None) -> None:
    """Serve the bundled demo site on 127.0.0.1, crawl it, and print today's flagged list."""
    from crawler.demo import SOURCES_FILE
    from crawler.demo.server import start_demo_server
    from storage.db import mask_url
    from storage.repository import list_leads

    db = _open_db(db_url)
    console = make_console()
    try:
        server = start_demo_server(port=port)
    except (RuntimeError, OSError) as exc:
        raise CliError(f"无法启动演示网站：{exc}") from None
    with server:
        os.environ["XUNJIAN_DEMO_URL"] = server.url
        console.print(f"演示网站已启动：{server.url}/")
        sources = _load(str(SOURCES_FILE))
        _crawl(sources, db, console)
    _print_leads(list_leads(db), "table", None, False)
    where = db.path.resolve() if db.path else mask_url(db.url)
    console.print(f"数据库位置：{where}")


@main.group()
def sources() -> None:
    """Work with the sources file."""


@sources.command("check")
@click.argument("file", required=False, metavar="[FILE]")
def sources_check(file: str | None) -> None:
    """Validate a sources file (default ./sources.toml) and list its sources."""
    from rich.table import Table

    loaded = _load(file)
    table = Table(title=f"{file or DEFAULT_SOURCES_FILE}：{len(loaded)} 个来源，配置有效", header_style="bold")
    for col in ("名称", "类型", "起始网址", "浏览器渲染", "最大深度", "最大页面数", "计划"):
        table.add_column(col)
    for s in loaded:
        table.add_row(s.name, s.kind, "\n".join(s.start_urls), "是" if s.render else "否",
                      str(s.max_depth), str(s.max_pages), s.schedule or "")
    make_console().print(table)


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@_db_option
def db_upgrade(db_url: str | None) -> None:
    """Apply database migrations (creates the database if needed)."""
    from storage.db import current_revision, mask_url

    database = _open_db(db_url)
    click.echo(f"数据库已升级到版本 {current_revision(database.url)}：{mask_url(database.url)}")


main.add_command(detect)
main.add_command(export)
main.add_command(verify)
main.add_command(rules)
main.add_command(model)
main.add_command(daily)
main.add_command(lead)
main.add_command(review)
main.add_command(schedule)
main.add_command(runs)
main.add_command(status)
main.add_command(canary)


if __name__ == "__main__":
    main()
