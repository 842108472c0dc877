"""One crawl of one source, in its own process: the entry point the scheduler spawns.

    python -m crawler.crawl_job --source NAME [--sources FILE] [--db URL] [--data-dir DIR]

The scheduler gives the database URL in ``$XUNJIAN_DB_URL``, never as ``--db``: a command line is
visible to every user in ``ps`` and the URL may hold a password. Files are created private (umask 077).

The run gets its own JOBDIR under ``<data>/jobs/<source>/`` (see crawler.jobdir): a run stopped by a
signal is resumed by the next one when its JOBDIR is complete, otherwise the next run starts fresh.
Scrapy's log goes to ``<data>/logs/``; a one-line summary (or a one-line error) goes to stderr, and the
progress bar is shown only when stdout is a terminal. One SIGTERM (or SIGINT) stops the crawl cleanly
and keeps its JOBDIR for the next run; a second signal forces Scrapy down and the JOBDIR is discarded
by the next run.

In Redis mode the run label (``$XUNJIAN_REDIS_RUN``, set by the scheduler) is kept in the JOBDIR's
marker; a run that resumes an interrupted JOBDIR reuses that label, so it continues the interrupted
shared frontier in Redis instead of abandoning it.

Exit codes:
  0  the crawl ran to its end (including a page or time limit: ``closespider_*``)
  1  the work failed: database unavailable, start URL unreachable, crawl error
  2  bad input: sources file invalid, unknown source, bad option
  3  stopped by a signal; the JOBDIR is kept and the next run of the source resumes it
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from datetime import datetime, timezone

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: one line, exit code 2
        print(f"错误：参数无效：{message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="python -m crawler.crawl_job", description="Crawl one source once.")
    parser.add_argument("--source", required=True, metavar="NAME", help="Name of the source in the sources file.")
    parser.add_argument("--sources", metavar="FILE", help="Sources file (default $XUNJIAN_SOURCES or ./sources.toml).")
    parser.add_argument("--db", metavar="URL", help="Database URL (default $XUNJIAN_DB_URL, else sqlite:///./data/xunjian.db).")
    parser.add_argument("--data-dir", metavar="DIR", help="Data directory (default $XUNJIAN_DATA_DIR or ./data).")
    return parser.parse_args(argv)


def _fail(message: str, code: int) -> int:
    print(f"错误：{message}", file=sys.stderr)
    return code


def exit_code(outcome) -> int:
    from crawler.health import FRONTIER_DONE  # imported late: this module starts before the heavy ones

    reason = outcome.finish_reason
    if outcome.unreachable:
        return EXIT_FAILED
    if reason == "shutdown":
        return EXIT_INTERRUPTED
    # A Redis worker that found its run already crawled by its peers has done its job too.
    if reason in ("finished", FRONTIER_DONE) or reason.startswith("closespider_"):
        return EXIT_OK
    return EXIT_FAILED


def _stopped_early(signum, frame):
    # A signal before Scrapy has taken over its handlers: nothing was crawled yet, leave quietly.
    raise SystemExit(EXIT_INTERRUPTED)


def redis_run_label(job) -> tuple[str | None, bool]:
    """The Redis run label for this run (None outside Redis mode) and whether it is the resumed run's.

    A resumed JOBDIR keeps the label it was started with, so the interrupted frontier in Redis is
    continued rather than abandoned; otherwise the label comes from ``$XUNJIAN_REDIS_RUN``.
    """
    from crawler import jobdir

    if not os.environ.get("XUNJIAN_REDIS_URL"):
        return None, False
    previous = (jobdir.read_marker(job.path) or {}).get("redis_run")
    if job.resumed and isinstance(previous, str):
        return previous, True
    return os.environ.get("XUNJIAN_REDIS_RUN", "").strip(), False


def main(argv: list[str] | None = None) -> int:
    from crawler.cli_common import keep_private

    keep_private()
    signal.signal(signal.SIGTERM, _stopped_early)
    args = parse_args(argv)
    from crawler.sources import SourcesError, find_source, load_sources
    from storage.errors import StorageError

    sources_file = args.sources or os.environ.get("XUNJIAN_SOURCES") or "sources.toml"
    try:
        source = find_source(load_sources(sources_file), args.source)
    except SourcesError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)

    from crawler import jobdir
    from crawler.db import database_for
    from crawler.runner import CrawlSetupError, run_crawl
    from storage.evidence import data_dir

    data = data_dir(args.data_dir)
    os.environ["XUNJIAN_DATA_DIR"] = str(data)  # child components (evidence store) read it too
    try:
        db = database_for(args.db)
    except StorageError as exc:
        return _fail(str(exc), EXIT_FAILED)
    try:
        job = jobdir.prepare(data, source.name)
    except OSError as exc:
        return _fail(f"无法创建抓取任务目录 {jobdir.source_jobs(data, source.name)}：{exc}", EXIT_FAILED)
    from storage.repository import abandon_run

    for run_id in job.abandoned_runs:  # its process died (SIGKILL, crash) before recording the end
        abandon_run(db, run_id, "killed")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    log_file = data / "logs" / f"crawl-{source.name}-{stamp}-{os.getpid()}.log"
    overrides = {"JOBDIR": str(job.path), "XUNJIAN_DATA_DIR": str(data), "XUNJIAN_SOURCES": sources_file,
                 "XUNJIAN_RESUMED_RUN": job.previous_run_id or 0}
    redis_run, same_frontier = redis_run_label(job)
    if redis_run is not None:
        overrides["XUNJIAN_REDIS_RUN"] = redis_run
        jobdir.write_marker(job.path, redis_run=redis_run)
    try:
        outcome = run_crawl([source], db.url, log_file=log_file, overrides=overrides,
                            show_progress=sys.stdout.isatty())[0]
    except CrawlSetupError as exc:
        jobdir.conclude(job, "setup_error", None)
        return _fail(str(exc), EXIT_FAILED)
    except Exception as exc:  # noqa: BLE001 - the process boundary: report one line, keep the log
        return _fail(f"来源 \"{source.name}\" 抓取出错：{type(exc).__name__}: {exc}（日志：{log_file}）", EXIT_FAILED)
    run_id = outcome.run_id
    jobdir.conclude(job, outcome.finish_reason, run_id)
    if not outcome.finish_reason and run_id:  # forced down (a second signal): Scrapy never closed the run
        abandon_run(db, run_id, "forced_stop")
    code = exit_code(outcome)
    if outcome.failure:
        return _fail(f"来源 \"{source.name}\" 抓取出错：{outcome.failure}（日志：{log_file}）", EXIT_FAILED)
    how = "续抓" if job.resumed else "抓取"
    line = (f"来源 \"{source.name}\" {how}结束（{outcome.finish_reason or '未知'}）：页面 {outcome.pages}（另有未变化 {outcome.unchanged}），"
            f"错误 {outcome.errors}，新发现 {outcome.new_findings}，新线索 {outcome.new_leads}")
    if code == EXIT_FAILED and outcome.unreachable:
        return _fail(f"来源 \"{source.name}\" 的起始网址无法访问：{outcome.unreachable[0]}", EXIT_FAILED)
    if same_frontier:
        line += f"；沿用中断时的 Redis 运行标签 {redis_run or '（无标签）'}，继续其共享队列"
    elif redis_run:
        line += f"；Redis 运行标签 {redis_run}"
    if code == EXIT_INTERRUPTED:
        line += f"；已中断，下次运行将从 {job.path} 继续"
    print(line, file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
