"""Per-run JOBDIRs: where Scrapy keeps a crawl's queue and dupefilter so a stopped run can go on later.

Layout: ``<data>/jobs/<source>/<UTC timestamp>-<pid>/``. Besides Scrapy's own files
(``requests.queue/``, ``requests.seen``, ``spider.state``) each directory holds ``xunjian-run.json``,
written by us: the run id, the process id, the state (``running``, ``interrupted``) and, in Redis mode,
the run label of the shared frontier (``redis_run``; the queue and duplicate filter are then in Redis).

A run that ends normally deletes its directory. A run stopped by a signal closes Scrapy cleanly, which
writes the queue and the spider state; it is marked ``interrupted`` and the next run of the source
resumes it. Anything else (a process killed with SIGKILL, a crash, a half-written queue) is not
resumable: the next run moves it aside under ``<data>/jobs/<source>/broken/`` (keeping the newest few
for inspection) and starts fresh. Long-term "already seen" state lives in the database, not here.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

logger = logging.getLogger(__name__)

MARKER = "xunjian-run.json"
BROKEN = "broken"
KEEP_BROKEN = 3
RUNNING, INTERRUPTED = "running", "interrupted"


@dataclass
class JobDir:
    path: Path
    resumed: bool
    previous_run_id: int | None = None
    discarded: tuple[str, ...] = ()
    abandoned_runs: tuple[int, ...] = ()  # run ids of discarded JOBDIRs whose process died mid-run


def source_jobs(data: Path, source: str) -> Path:
    return data / "jobs" / source


def read_marker(path: Path) -> dict | None:
    try:
        value = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_marker(path: Path, **values) -> None:
    current = read_marker(path) or {}
    current.update(values)
    tmp = path / f"{MARKER}.tmp"
    tmp.write_text(json.dumps(current, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path / MARKER)


def _queue_readable(queue: Path) -> bool:
    """Scrapy's disk queue: ``active.json`` (written on a clean close) names the priority queues kept."""
    try:
        active = json.loads((queue / "active.json").read_text(encoding="utf-8"))
        if not isinstance(active, (list, dict)):
            return False
        for entry in queue.rglob("*"):
            if entry.is_file():
                with open(entry, "rb") as handle:
                    handle.read(16)
    except (OSError, ValueError):
        return False
    return True


def _state_readable(path: Path) -> bool:
    try:
        with open(path / "spider.state", "rb") as handle:
            pickle.load(handle)
    except Exception:  # noqa: BLE001 - any unpickling failure means "not resumable"
        return False
    return True


def is_resumable(path: Path) -> bool:
    """Complete JOBDIR of a run that was stopped by a signal and closed cleanly."""
    marker = read_marker(path)
    if not marker or marker.get("state") != INTERRUPTED:
        return False
    if "redis_run" in marker:  # Redis mode: queue and duplicate filter live in Redis, not in the JOBDIR
        return bool(os.environ.get("XUNJIAN_REDIS_URL")) and _state_readable(path)
    return (path / "requests.queue").is_dir() and _queue_readable(path / "requests.queue") \
        and (path / "requests.seen").is_file() and _state_readable(path)


def _discard(path: Path, broken: Path) -> None:
    broken.mkdir(parents=True, exist_ok=True)
    target = broken / path.name
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    try:
        path.rename(target)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
    kept = sorted((p for p in broken.iterdir() if p.is_dir()), key=lambda p: p.name)
    for old in kept[:-KEEP_BROKEN]:
        shutil.rmtree(old, ignore_errors=True)


def prepare(data: Path, source: str) -> JobDir:
    """The JOBDIR for a new run of ``source``: the newest resumable one, else a fresh directory."""
    root = source_jobs(data, source)
    root.mkdir(parents=True, exist_ok=True)
    candidates = sorted((p for p in root.iterdir() if p.is_dir() and p.name != BROKEN), key=lambda p: p.name)
    chosen: Path | None = None
    discarded: list[str] = []
    abandoned: list[int] = []
    for path in reversed(candidates):
        if chosen is None and is_resumable(path):
            chosen = path
            continue
        marker = read_marker(path) or {}
        pid = marker.get("pid")
        if marker.get("state") == RUNNING and isinstance(pid, int) and _alive(pid) and pid != os.getpid():
            continue  # another process is working on it right now
        logger.warning("discarding JOBDIR that cannot be resumed: %s", path)
        discarded.append(path.name)
        if isinstance(marker.get("run_id"), int):
            abandoned.append(marker["run_id"])
        _discard(path, root / BROKEN)
    if chosen is not None:
        previous = read_marker(chosen) or {}
        write_marker(chosen, state=RUNNING, pid=os.getpid(), resumed_at=_now())
        return JobDir(chosen, True, previous.get("run_id"), tuple(discarded), tuple(abandoned))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = root / f"{stamp}-{os.getpid()}"
    path.mkdir(parents=True)
    write_marker(path, state=RUNNING, pid=os.getpid(), started_at=_now())
    return JobDir(path, False, None, tuple(discarded), tuple(abandoned))


def record_run(path: str | Path, run_id: int) -> None:
    """Remember the database run id of the process working in ``path``."""
    path = Path(path)
    if (path / MARKER).exists():
        write_marker(path, run_id=run_id)


def conclude(job: JobDir, finish_reason: str, run_id: int | None) -> None:
    """After the crawl: keep an interrupted JOBDIR for the next run, remove a finished one."""
    if finish_reason == "shutdown":
        write_marker(job.path, state=INTERRUPTED, run_id=run_id, stopped_at=_now())
    else:
        shutil.rmtree(job.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
