"""The daily self-check ("canary"): crawl pages with known violations and make sure they are caught.

``run_canary`` starts the bundled demo site, crawls its ``board`` source into a scratch SQLite database
through the normal crawl subprocess (``crawler.crawl_process.spawn_crawl``: scraping, extraction,
detection, storage), then checks that every violation the answer key lists for that source's pages
has a finding of one of its categories.  Anything else (the crawl process failing, a broken rule
pack, detector or database) is an alert: logged and, where configured, POSTed to the webhook.
The scratch directory is removed after a pass and kept (path in the alert) after a failure.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import select

from crawler.crawl_process import EXIT_NOT_STARTED, spawn_crawl

log = logging.getLogger("xunjian.canary")

CANARY_SOURCE = "board"
CANARY_PREFIX = "/board/"


@dataclass
class CanaryResult:
    ok: bool
    expected: int = 0
    found: int = 0
    missing: list[str] = field(default_factory=list)
    problem: str = ""
    scratch: Path | None = None

    @property
    def message(self) -> str:
        if self.ok:
            return f"自检通过：{self.expected} 个已知违规页面全部被识别"
        return f"自检失败：{self.problem}"


def expected_findings(answer_key) -> dict[str, set[str]]:
    """Path -> expected categories for the canary source's pages (no browser-rendered ones)."""
    return {
        path: set(v.categories)
        for path, v in answer_key.violations.items()
        if path.startswith(CANARY_PREFIX) and not v.render
    }


def found_findings(db_url: str) -> dict[str, set[str]]:
    """Path -> categories of the findings stored in the scratch database."""
    from storage.db import open_database
    from storage.models import Finding, Page, Snapshot

    db = open_database(db_url, upgrade=True)
    try:
        query = (select(Page.url, Finding.category)
                 .join(Snapshot, Snapshot.page_id == Page.id)
                 .join(Finding, Finding.snapshot_id == Snapshot.id))
        found: dict[str, set[str]] = {}
        with db.session() as session:
            for url, category in session.execute(query):
                found.setdefault(urlsplit(url).path, set()).add(category)
        return found
    finally:
        db.dispose()


def compare(expected: dict[str, set[str]], found: dict[str, set[str]]) -> CanaryResult:
    if not expected:
        return CanaryResult(False, problem="答案文件中没有该来源的已知违规页面，无法自检")
    missing = sorted(path for path, categories in expected.items() if not categories & found.get(path, set()))
    result = CanaryResult(not missing, len(expected), len(expected) - len(missing), missing)
    if missing:
        sample = "、".join(missing[:5]) + ("……" if len(missing) > 5 else "")
        result.problem = f"{len(expected)} 个已知违规页面中有 {len(missing)} 个没有被识别：{sample}"
    return result


def run_canary(*, data_dir: Path, answer_key_path: str | Path | None = None, alert_on_failure: bool = True) -> CanaryResult:
    """Run the canary end to end; on failure raise an alert (log + webhook)."""
    from crawler.demo import SOURCES_FILE, load_answer_key
    from crawler.demo.server import start_demo_server
    from crawler.health import alert

    scratch_root = Path(data_dir) / "canary"
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=scratch_root))
    db_url = f"sqlite:///{scratch / 'canary.db'}"
    try:
        expected = expected_findings(load_answer_key(answer_key_path))
        server = start_demo_server()
        try:
            code = spawn_crawl(CANARY_SOURCE, sources_path=SOURCES_FILE, db_url=db_url, data_dir=scratch,
                               env={"XUNJIAN_DEMO_URL": server.url})
        finally:
            server.stop()
        if code == EXIT_NOT_STARTED:
            return CanaryResult(False, problem="调度器正在停止，自检没有运行", scratch=scratch)
        result = compare(expected, found_findings(db_url))
        if code != 0:
            result.ok = False
            result.problem = f"抓取进程退出码 {code}" + (f"；{result.problem}" if result.problem else "")
    except Exception as exc:  # the canary must report any breakage, whatever raised it
        result = CanaryResult(False, problem=f"{type(exc).__name__}: {exc}".splitlines()[0])
    result.scratch = scratch
    if result.ok:
        shutil.rmtree(scratch, ignore_errors=True)
        log.info(result.message)
    elif alert_on_failure:
        alert("canary", result.message, details={
            "expected": result.expected, "found": result.found, "missing": result.missing,
            "scratch": str(scratch)})
    return result
