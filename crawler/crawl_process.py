"""Crawl subprocesses: each scheduled crawl runs in a process of its own, never in the scheduler.

``spawn_crawl`` starts ``python -m crawler.crawl_job --source NAME --sources FILE --data-dir DIR``
(or the command in ``$XUNJIAN_CRAWL_COMMAND``, shell-split, with the same arguments appended), waits
for it and returns its exit code.  The database URL goes in the child's ``$XUNJIAN_DB_URL``, not on its
command line, which every user sees in ``ps`` and which is logged when the start fails: the URL may
hold a password.  Children run in a session of their own so that a Ctrl-C on the
scheduler's terminal does not reach them; ``stop_all`` sends each running child ONE SIGTERM, waits up
to ``timeout`` seconds for all of them, and only then SIGKILLs (and logs) the ones still running.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from storage.db import ENV_DB_URL

log = logging.getLogger("xunjian.scheduler")

COMMAND_ENV = "XUNJIAN_CRAWL_COMMAND"
EXIT_NOT_STARTED = -1000


class Children:
    """The crawl processes this scheduler has running, and the switch that stops new ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, tuple[str, subprocess.Popen]] = {}
        self.stopping = False

    def start(self, label: str, argv: list[str], log_path: Path, env: dict | None) -> subprocess.Popen | None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self.stopping:
                return None
            with open(log_path, "ab") as out:
                proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=env, start_new_session=True)
            self._running[proc.pid] = (label, proc)
        return proc

    def done(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._running.pop(proc.pid, None)

    def running(self) -> list[str]:
        with self._lock:
            return [label for label, _ in self._running.values()]

    def stop_all(self, timeout: float) -> None:
        """One SIGTERM to every running child; SIGKILL only those still alive after ``timeout`` s."""
        with self._lock:
            self.stopping = True
            children = list(self._running.values())
        for label, proc in children:
            if proc.poll() is None:
                log.info("向抓取进程 %s（pid %d）发送 SIGTERM，最多等待 %g 秒", label, proc.pid, timeout)
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for label, proc in children:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("抓取进程 %s（pid %d）在 %g 秒内没有退出，强制结束（SIGKILL）", label, proc.pid, timeout)
                proc.kill()
                proc.wait()


CHILDREN = Children()


def crawl_command() -> list[str]:
    custom = os.environ.get(COMMAND_ENV, "").strip()
    if custom:
        return shlex.split(custom)
    return [sys.executable, "-m", "crawler.crawl_job"]


def spawn_crawl(source: str, *, sources_path: str | Path, db_url: str, data_dir: Path,
                env: dict | None = None, children: Children = CHILDREN) -> int:
    """Run one crawl of ``source`` in a subprocess and wait for it; returns the exit code.

    Returns ``EXIT_NOT_STARTED`` when the scheduler is stopping and the crawl was not started.
    """
    argv = crawl_command() + ["--source", source, "--sources", str(sources_path), "--data-dir", str(data_dir)]
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    log_path = Path(data_dir) / "logs" / f"scheduled-{source}-{stamp}.log"
    full_env = {**os.environ, ENV_DB_URL: db_url, **(env or {})}
    try:
        proc = children.start(source, argv, log_path, full_env)
    except OSError as exc:
        log.error("无法启动来源 %s 的抓取进程：%s（命令：%s）", source, exc, shlex.join(argv))
        return 127
    if proc is None:
        log.info("调度器正在停止，不再启动来源 %s 的抓取", source)
        return EXIT_NOT_STARTED
    log.info("开始抓取来源 %s（pid %d，日志 %s）", source, proc.pid, log_path)
    try:
        code = proc.wait()
    finally:
        children.done(proc)
    log.info("来源 %s 的抓取进程已结束，退出码 %d", source, code)
    return code
