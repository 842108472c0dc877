"""Shared fixtures: the real demo site on 127.0.0.1 and the real ``xunjian`` CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300) -> CliResult:
    """Run ``python -m crawler.cli`` in a fresh process (Twisted's reactor cannot restart in-process)."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "crawler.cli", *args],
        cwd=cwd or ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def demo_site():
    from crawler.demo.server import start_demo_server

    server = start_demo_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def answer_key():
    from crawler.demo.answer_key import load_answer_key

    return load_answer_key()
