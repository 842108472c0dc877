"""Operations commands: ``schedule`` (and ``schedule reload``), ``runs``, ``status`` and ``canary``.

Exit codes: 0 success; 1 the work failed (database unavailable, scheduler already running or not
running, canary failed); 2 bad input (invalid sources file, unknown source, bad option).
Every error is one line on stderr starting with 错误：.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from crawler.console import local_time, make_console, plain
from crawler.health import finish_name

from crawler.cli_common import EXIT_BAD_INPUT, OneLineCommand, OneLineGroup
from crawler.cli_common import CliError as OpsError
from crawler.cli_common import db_option as _db_option
from crawler.cli_common import open_db as _open_db


def _data_option(func):
    return click.option("--data-dir", "data_dir", metavar="DIR",
                        help="Data directory (default: $XUNJIAN_DATA_DIR, else ./data).")(func)


def _sources_option(func):
    return click.option("--sources", "sources_path", metavar="FILE",
                        help="Sources file (default ./sources.toml).")(func)


def _data_dir(value: str | None) -> Path:
    from storage.evidence import data_dir

    return data_dir(value)


def _sources(path: str | None):
    from crawler.sources import DEFAULT_SOURCES_FILE, SourcesError, load_sources

    try:
        return Path(path or DEFAULT_SOURCES_FILE), load_sources(path)
    except SourcesError as exc:
        raise OpsError(str(exc), EXIT_BAD_INPUT) from None


@click.group(cls=OneLineGroup, invoke_without_command=True)
@_sources_option
@_db_option
@_data_option
@click.pass_context
def schedule(ctx: click.Context, sources_path: str | None, db_url: str | None, data_dir: str | None) -> None:
    """Run the scheduler until SIGTERM (SIGHUP or `schedule reload` re-reads the sources file)."""
    if ctx.invoked_subcommand is not None:
        return
    from crawler.scheduler import Context, SchedulerError, serve
    from crawler.sources import SourcesError
    from storage.db import resolve_db_url

    path, _ = _sources(sources_path)
    db = _open_db(db_url)
    try:
        context = Context.from_env(path, resolve_db_url(db.url), _data_dir(data_dir))
    except SchedulerError as exc:
        raise OpsError(str(exc), EXIT_BAD_INPUT) from None
    try:
        serve(context)
    except SourcesError as exc:
        raise OpsError(str(exc), EXIT_BAD_INPUT) from None
    except SchedulerError as exc:
        raise OpsError(str(exc)) from None


@schedule.command("reload", cls=OneLineCommand)
@_data_option
def schedule_reload(data_dir: str | None) -> None:
    """Tell the running scheduler (pid file under the data dir) to re-read its sources file."""
    from crawler.scheduler import SchedulerError, request_reload

    try:
        pid = request_reload(_data_dir(data_dir))
    except SchedulerError as exc:
        raise OpsError(str(exc)) from None
    click.echo(f"已通知调度器（pid {pid}）重新加载来源配置")


@click.command(cls=OneLineCommand)
@click.option("--source", "source", metavar="NAME", help="Only this source.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000), help="Newest N runs.")
@_db_option
def runs(source: str | None, limit: int, db_url: str | None) -> None:
    """Crawl history: start, end, finish reason, pages, errors by kind, new findings and leads."""
    from storage.runs import list_runs

    rows = list_runs(_open_db(db_url), source, limit)
    console = make_console()
    who = f"来源 {source} 的" if source else ""
    if not rows:
        console.print(plain(f"没有{who}抓取记录。"))
        return
    table = Table(title=plain(f"{who}抓取记录（最近 {len(rows)} 次）"), header_style="bold")
    for name, justify in (("编号", "right"), ("来源", "left"), ("开始", "left"), ("结束", "left"),
                          ("结束原因", "left"), ("页面", "right"), ("错误（按类型）", "left"),
                          ("新发现", "right"), ("新线索", "right")):
        table.add_column(name, justify=justify)
    for run in rows:
        errors = str(run.errors)
        if run.errors_by_kind:
            errors += "（" + "，".join(f"{k} {v}" for k, v in run.errors_by_kind.items()) + "）"
        table.add_row(str(run.id), plain(run.source), local_time(run.started_at), local_time(run.finished_at),
                      plain(finish_name(run.finish_reason)), str(run.pages), plain(errors), str(run.new_findings),
                      str(run.new_leads))
    console.print(table)


@click.command(cls=OneLineCommand)
@_sources_option
@_db_option
@_data_option
def status(sources_path: str | None, db_url: str | None, data_dir: str | None) -> None:
    """Every source with its last run, health (健康/异常 and why) and next scheduled run."""
    from crawler.health import source_health
    from crawler.scheduler import CRAWL_PREFIX, is_running
    from storage.runs import next_run_times

    _, sources = _sources(sources_path)
    db = _open_db(db_url)
    next_runs = next_run_times(db)
    table = Table(title="来源状态", header_style="bold")
    for name in ("来源", "上次抓取", "结束原因", "页面", "健康", "原因", "下次抓取"):
        table.add_column(name)
    for source in sources:
        health = source_health(db, source.name, running=is_running(_data_dir(data_dir), source.name))
        last = health.run
        job = CRAWL_PREFIX + source.name
        upcoming = local_time(next_runs[job]) if next_runs.get(job) else ("已暂停" if job in next_runs else "未调度")
        label = plain(health.label, "green" if health.healthy else "bold red")
        table.add_row(plain(source.name), local_time(last.started_at) if last else "从未抓取",
                      plain(finish_name(last.finish_reason) if last else ""), str(last.pages) if last else "",
                      label, plain(health.reason), upcoming)
    make_console().print(table)


@click.command(cls=OneLineCommand)
@_data_option
@click.option("--answer-key", "answer_key", metavar="FILE", help="Answer key to check against (default: the bundled one).")
def canary(data_dir: str | None, answer_key: str | None) -> None:
    """Self-check: crawl the bundled demo board and verify its known violations are found."""
    import logging

    from crawler.canary import run_canary

    data = _data_dir(data_dir)
    (data / "logs").mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        filename=data / "logs" / "canary.log", encoding="utf-8")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    result = run_canary(data_dir=data, answer_key_path=answer_key)
    if not result.ok:
        raise OpsError(result.message)
    make_console().print(plain(result.message))
