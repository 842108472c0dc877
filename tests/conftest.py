"""Shared fixtures: the real demo site on 127.0.0.1 and the real ``xunjian`` CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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


def board_source(max_pages: int = 200, delay: float = 0.0, extra: str = "") -> str:
    """sources.toml text for the demo's classifieds board (``${XUNJIAN_DEMO_URL}`` left to the loader)."""
    return f"""
[[source]]
name = "board"
kind = "listing"
start_urls = ["${{XUNJIAN_DEMO_URL}}/board/list/1.html"]
allowed_domains = ["127.0.0.1"]
allow_private = true
follow = ["/board/"]
max_depth = 10
max_pages = {max_pages}
delay = {delay}
{extra}
[source.selectors]
title = "h1.ad-title"
body = "div.ad-body"
contact = ".contact"
price = ".price"
next_page = "a.next"
detail_link = "a.ad-link"
"""


@contextmanager
def pg_schema_url(prefix: str) -> Iterator[str]:
    """The URL of a fresh schema in $XUNJIAN_TEST_PG_URL's database (search_path set), dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(os.environ["XUNJIAN_TEST_PG_URL"])
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(os.environ["XUNJIAN_TEST_PG_URL"]).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def pg_schema_database(prefix: str) -> Iterator:
    """A migrated xunjian Database in a fresh schema of $XUNJIAN_TEST_PG_URL, dropped afterwards."""
    from storage.db import open_database

    with pg_schema_url(prefix) as url:
        database = open_database(url)
        try:
            yield database
        finally:
            database.dispose()


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
