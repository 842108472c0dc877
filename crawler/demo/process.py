"""Runs the demo server in a child process: ``start_demo_server()`` -> ``DemoServerProcess``.

The child is ``sys.executable -m crawler.demo.server``; its first stdout line carries the URL.  The
child's stderr goes to a temporary file so it can never block, and is quoted when start-up fails.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

URL_PREFIX = "XUNJIAN_DEMO_URL="
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class DemoServerProcess:
    """A running demo server child process; ``url`` has no trailing slash."""

    def __init__(self, process: subprocess.Popen, url: str, stderr_file):
        self.process = process
        self.url = url
        self._stderr_file = stderr_file

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def stderr_text(self) -> str:
        self._stderr_file.flush()
        self._stderr_file.seek(0)
        return self._stderr_file.read()

    def stop(self) -> int:
        """Send one SIGTERM and wait; kill only if the child hangs for more than 10 s.  Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> "DemoServerProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
        self._stderr_file.close()

    def __repr__(self) -> str:
        return f"DemoServerProcess(pid={self.process.pid}, url={self.url!r})"


def _read_first_line(stream, result: queue.Queue) -> None:
    try:
        result.put(stream.readline())
    except (OSError, ValueError) as exc:
        result.put(exc)


def start_demo_server(port: int = 0, *, host: str = "127.0.0.1", access_log: str | os.PathLike | None = None,
                      verbose: bool = False, timeout: float = START_TIMEOUT) -> DemoServerProcess:
    """Start the demo site in a subprocess and wait (at most ``timeout`` s) for its URL line.

    Raises RuntimeError, quoting the child's stderr, when the child exits or stays silent.
    """
    cmd = [sys.executable, "-m", "crawler.demo.server", "--host", host, "--port", str(port)]
    if access_log is not None:
        cmd += ["--access-log", os.fspath(access_log)]
    if verbose:
        cmd.append("--verbose")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    stderr_file = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr_file, stdin=subprocess.DEVNULL,
                               text=True, encoding="utf-8", env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_first_line, args=(process.stdout, lines), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        line = None
    if isinstance(line, str) and line.startswith(URL_PREFIX):
        return DemoServerProcess(process, line[len(URL_PREFIX):].strip().rstrip("/"), stderr_file)
    if process.poll() is None:
        process.kill()
    process.wait()
    stderr_file.seek(0)
    err = stderr_file.read().strip()
    stderr_file.close()
    if process.stdout is not None:
        process.stdout.close()
    if line is None:
        reason = f"{timeout:g} 秒内没有输出网址"
    elif isinstance(line, str) and line:
        reason = f"首行输出为 {line!r}，不是网址"
    else:
        reason = "子进程在输出网址前退出"
    raise RuntimeError(
        f"演示站点启动失败（{' '.join(cmd)}）：{reason}，退出码 {process.returncode}；子进程标准错误：{err or '（空）'}"
    )
