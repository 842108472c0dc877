"""``xunjian schedule``: the long-lived scheduler (APScheduler 3.11, jobs kept in the database).

Jobs are stored in APScheduler's ``apscheduler_jobs`` table (SQLAlchemyJobStore, same database as the
leads) and name their function by import path (``crawler.scheduler:run_source``), so they survive
restarts.  Every job is ``coalesce=True``, ``max_instances=1`` with an explicit ``misfire_grace_time``:
runs missed while the scheduler was down become ONE catch-up run, and a source is never crawled twice
at the same time (a lock file under ``<data>/locks/`` also keeps out a second scheduler).

Jobs: ``crawl:<source>`` per source with a ``schedule`` (cron, Asia/Shanghai); ``daily-list`` writes
the day's flagged list to ``<data>/daily/``; ``canary`` runs the self-check (crawler.canary).

Redis mode (``XUNJIAN_REDIS_URL`` set): each crawl gets ``XUNJIAN_REDIS_RUN`` = ``<source>@<fire time>``,
the job's latest scheduled fire time at or before now (Asia/Shanghai, e.g. ``board@20261125T0600+0800``),
so every machine firing the same cron joins the same shared frontier, a catch-up run after downtime
takes the latest missed fire time, and the next fire starts a new frontier.  It overrides any
``XUNJIAN_REDIS_RUN`` of the scheduler's own environment.

Signals: SIGHUP re-reads the sources file and adds, changes and removes crawl jobs; SIGTERM/SIGINT stop
new runs, send each running crawl ONE SIGTERM and wait (``XUNJIAN_STOP_TIMEOUT``) before SIGKILL.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from crawler.crawl_process import CHILDREN, EXIT_NOT_STARTED, spawn_crawl
from crawler.fire_label import run_label
from crawler.sources import Source, SourcesError, find_source, load_sources

log = logging.getLogger("xunjian.scheduler")

TZ = "Asia/Shanghai"
CRAWL_PREFIX = "crawl:"
DAILY_JOB = "daily-list"
CANARY_JOB = "canary"
PID_FILE = "scheduler.pid"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SchedulerError(f"环境变量 {name} 应为数值（秒），实际为 {raw!r}") from None


class SchedulerError(Exception):
    """The scheduler cannot start or cannot be signalled; ``str()`` is one line."""


@dataclass
class Context:
    sources_path: Path
    db_url: str
    data_dir: Path
    stop_timeout: float = 60.0
    misfire_grace: float = 7 * 86400
    interval: float | None = None  # test/debug: every source every N seconds instead of its cron
    daily_cron: str = "55 23 * * *"
    canary_cron: str = "30 5 * * *"

    @classmethod
    def from_env(cls, sources_path: Path, db_url: str, data_dir: Path) -> Context:
        interval = _env_float("XUNJIAN_SCHEDULE_INTERVAL", 0.0)
        return cls(
            sources_path=sources_path.absolute(), db_url=db_url, data_dir=data_dir.absolute(),
            stop_timeout=_env_float("XUNJIAN_STOP_TIMEOUT", 60.0),
            misfire_grace=_env_float("XUNJIAN_MISFIRE_GRACE", 7 * 86400),
            interval=interval or None,
            daily_cron=os.environ.get("XUNJIAN_DAILY_CRON", "55 23 * * *").strip(),
            canary_cron=os.environ.get("XUNJIAN_CANARY_CRON", "30 5 * * *").strip(),
        )


_context: Context | None = None
_scheduler: BackgroundScheduler | None = None  # the running service's, to read a job's own trigger


def _ctx() -> Context:
    if _context is None:
        raise SchedulerError("调度器尚未配置（作业只能在 xunjian schedule 中运行）")
    return _context


def _db():
    from crawler.db import database_for

    return database_for(_ctx().db_url)


# --- the jobs (referenced by import path in the job store) ------------------------------------------

def _source_lock(data_dir: Path, name: str):
    path = data_dir / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def is_running(data_dir: Path, name: str) -> bool:
    """Whether a scheduled crawl of ``name`` holds its lock right now."""
    if not (data_dir / "locks" / f"{name}.lock").exists():
        return False
    lock = _source_lock(data_dir, name)
    if lock is None:
        return True
    lock.close()
    return False


def _job_trigger(source: Source, ctx: Context):
    job = _scheduler.get_job(CRAWL_PREFIX + source.name) if _scheduler is not None else None
    if job is not None:
        return job.trigger
    return _trigger(source.schedule, ctx) if source.schedule or ctx.interval else None


def _redis_env(source: Source, ctx: Context, now: datetime) -> dict | None:
    if not os.environ.get("XUNJIAN_REDIS_URL", "").strip():
        return None
    label = run_label(source.name, _job_trigger(source, ctx), now, ctx.misfire_grace)
    log.info("来源 %s 本次抓取的 Redis 运行标签：%s", source.name, label)
    return {"XUNJIAN_REDIS_RUN": label}


def run_source(name: str) -> int:
    """Crawl one source in a subprocess, record a crashed run, check its health and alert."""
    from crawler.health import alert

    ctx = _ctx()
    try:
        source = find_source(load_sources(ctx.sources_path), name)
    except SourcesError as exc:
        alert("config", f"无法读取来源配置：{exc}", source=name)
        return 2
    lock = _source_lock(ctx.data_dir, name)
    if lock is None:
        log.warning("来源 %s 已有抓取在进行，本次跳过", name)
        return 0
    try:
        now = datetime.now(timezone.utc)
        started = now - timedelta(seconds=1)
        code = spawn_crawl(name, sources_path=ctx.sources_path, db_url=ctx.db_url, data_dir=ctx.data_dir,
                           env=_redis_env(source, ctx, now))
    finally:
        lock.close()
    if code == EXIT_NOT_STARTED:
        return code
    _after_run(source, started, code)
    return code


def _after_run(source: Source, started: datetime, code: int) -> None:
    from crawler.health import health_alert, source_health
    from storage.repository import finish_run, start_run
    from storage.runs import runs_since

    db = _db()
    if code != 0 and not runs_since(db, source.name, started):
        run_id = start_run(db, source.name, source.kind, source.as_config())
        finish_run(db, run_id, f"exit_{code}", {"exit_code": code}, 0, 0, 0, 0)
    health = source_health(db, source.name)
    if health.healthy:
        log.info("来源 %s 抓取健康", source.name)
    elif CHILDREN.stopping:
        log.info("来源 %s 的抓取因调度器停止而中断：%s", source.name, health.reason)
    else:
        health_alert(source.name, health)


def run_daily_list() -> str:
    """Write the day's flagged list (Asia/Shanghai) under ``<data>/daily/``; returns the file path."""
    from crawler.daily_file import write_daily_list

    ctx = _ctx()
    path = write_daily_list(_db(), ctx.data_dir)
    log.info("已写出当日线索清单：%s", path)
    return str(path)


def run_canary() -> bool:
    from crawler.canary import run_canary as canary

    result = canary(data_dir=_ctx().data_dir)
    return result.ok


# --- job store synchronisation ----------------------------------------------------------------------

def _trigger(cron: str | None, ctx: Context):
    if ctx.interval:
        return IntervalTrigger(seconds=ctx.interval, timezone=TZ)
    return CronTrigger.from_crontab(cron, timezone=TZ)


def trigger_key(trigger) -> str:
    if isinstance(trigger, IntervalTrigger):
        return f"interval[{trigger.interval.total_seconds():g}]"
    return f"{trigger} {trigger.timezone}"


def desired_jobs(sources: list[Source], ctx: Context) -> dict[str, dict]:
    jobs: dict[str, dict] = {}
    for source in sources:
        if source.schedule or ctx.interval:
            jobs[CRAWL_PREFIX + source.name] = {
                "func": "crawler.scheduler:run_source", "args": [source.name],
                "trigger": _trigger(source.schedule, ctx), "name": f"抓取来源 {source.name}",
            }
    for job_id, cron, func, name in ((DAILY_JOB, ctx.daily_cron, "run_daily_list", "当日线索清单"),
                                     (CANARY_JOB, ctx.canary_cron, "run_canary", "自检（金丝雀）")):
        if cron and cron.lower() != "off":
            jobs[job_id] = {"func": f"crawler.scheduler:{func}", "args": [],
                            "trigger": CronTrigger.from_crontab(cron, timezone=TZ), "name": name}
    return jobs


def sync_jobs(scheduler, sources: list[Source], ctx: Context) -> dict[str, list[str]]:
    """Make the job store match ``sources``; unchanged jobs keep their next run time (and catch-up)."""
    wanted = desired_jobs(sources, ctx)
    existing = {job.id: job for job in scheduler.get_jobs()}
    changes: dict[str, list[str]] = {"added": [], "changed": [], "removed": []}
    for job_id, spec in wanted.items():
        job = existing.get(job_id)
        same = job is not None and trigger_key(job.trigger) == trigger_key(spec["trigger"]) \
            and job.func_ref == spec["func"] and list(job.args) == spec["args"]
        if same:
            continue
        scheduler.add_job(spec["func"], spec["trigger"], args=spec["args"], id=job_id, name=spec["name"],
                          replace_existing=True, coalesce=True, max_instances=1,
                          misfire_grace_time=int(ctx.misfire_grace))
        changes["changed" if job is not None else "added"].append(job_id)
    for job_id in existing:
        if job_id not in wanted:
            scheduler.remove_job(job_id)
            changes["removed"].append(job_id)
    return changes


def _log_changes(changes: dict[str, list[str]]) -> None:
    labels = {"added": "新增", "changed": "更新", "removed": "删除"}
    parts = [f"{labels[k]} {', '.join(v)}" for k, v in changes.items() if v]
    log.info("作业已同步：%s", "；".join(parts) if parts else "无变化")


# --- the service ------------------------------------------------------------------------------------

def pid_path(data_dir: Path) -> Path:
    return data_dir / PID_FILE


def running_pid(data_dir: Path) -> int | None:
    """The pid of the scheduler running on ``data_dir``, or None (a stale pid file is ignored)."""
    try:
        pid = int(pid_path(data_dir).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def request_reload(data_dir: Path) -> int:
    pid = running_pid(data_dir)
    if pid is None:
        raise SchedulerError(f"没有正在运行的调度器（pid 文件 {pid_path(data_dir)} 不存在或已过期）")
    os.kill(pid, signal.SIGHUP)
    return pid


def _setup_logging(data_dir: Path) -> None:
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in (logging.StreamHandler(), logging.FileHandler(data_dir / "logs" / "scheduler.log", encoding="utf-8")):
        handler.setFormatter(fmt)
        root.addHandler(handler)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def build_scheduler(ctx: Context) -> BackgroundScheduler:
    db = _db()
    workers = max(4, int(_env_float("XUNJIAN_MAX_WORKERS", 8)))
    return BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=db.engine)},
        executors={"default": ThreadPoolExecutor(workers)},
        timezone=TZ,
    )


def serve(ctx: Context) -> None:
    """Run the scheduler until SIGTERM/SIGINT; SIGHUP reloads the sources file."""
    global _context, _scheduler
    sources = load_sources(ctx.sources_path)
    ctx.data_dir.mkdir(parents=True, exist_ok=True)
    other = running_pid(ctx.data_dir)
    if other is not None and other != os.getpid():
        raise SchedulerError(f"调度器已在运行（pid {other}，pid 文件 {pid_path(ctx.data_dir)}）")
    _context = ctx
    _setup_logging(ctx.data_dir)
    wake = threading.Event()
    pending: set[str] = set()

    def on_signal(signum, _frame):
        pending.add("reload" if signum == signal.SIGHUP else "stop")
        wake.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    scheduler = _scheduler = build_scheduler(ctx)
    scheduler.start(paused=True)
    pid_path(ctx.data_dir).write_text(f"{os.getpid()}\n")
    try:
        _log_changes(sync_jobs(scheduler, sources, ctx))
        scheduler.resume()
        log.info("调度器已启动（pid %d，来源文件 %s）", os.getpid(), ctx.sources_path)
        while "stop" not in pending:
            wake.wait(1.0)
            wake.clear()
            if "reload" in pending and "stop" not in pending:
                pending.discard("reload")
                _reload(scheduler, ctx)
    finally:
        log.info("正在停止调度器……")
        scheduler.pause()
        CHILDREN.stop_all(ctx.stop_timeout)
        scheduler.shutdown(wait=True)
        _scheduler = None
        pid_path(ctx.data_dir).unlink(missing_ok=True)
        log.info("调度器已停止")


def _reload(scheduler, ctx: Context) -> None:
    try:
        sources = load_sources(ctx.sources_path)
    except SourcesError as exc:
        log.error("重新加载失败，继续使用原有作业：%s", exc)
        return
    _log_changes(sync_jobs(scheduler, sources, ctx))
