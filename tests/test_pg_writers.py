"""Several crawl processes writing to one PostgreSQL database at once (the scale-out deployment).

Threads here, each with its own connection, stand in for processes on several machines: they start
runs of the same new source and store pages of the same advertiser at the same moment. Without the
write lock every store is select-then-insert and two writers create the same source (a unique
violation that killed one crawler at start-up) or two leads for one institution.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select, text

from storage.db import Database
from storage.models import CrawlRun, Source
from storage.repository import list_leads, start_run, store_batch
from tests.conftest import pg_schema_database
from tests.test_grouping import page

PG_URL = os.environ.get("XUNJIAN_TEST_PG_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="XUNJIAN_TEST_PG_URL 未设置（./run-tests 会启动 PostgreSQL）")

WRITERS = 6
ROUNDS = 10


@pytest.fixture
def pg() -> Iterator[Database]:
    with pg_schema_database("xunjian_writers") as database:
        yield database


def _at_once(work: Callable[[int], None]) -> list[BaseException]:
    """Run ``work(i)`` in WRITERS threads released together; the exceptions they raised."""
    barrier = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_runs_of_a_new_source_started_at_once_share_one_source_row(pg: Database) -> None:
    for round_ in range(ROUNDS):
        name = f"source-{round_}"
        errors = _at_once(lambda i: start_run(pg, name, "site", {"start_urls": ["http://127.0.0.1/"]}))
        assert errors == []
    with pg.session() as session:
        assert session.scalar(select(func.count()).select_from(Source)) == ROUNDS
        assert session.scalar(select(func.count()).select_from(CrawlRun)) == ROUNDS * WRITERS


def test_pages_of_one_advertiser_stored_at_once_make_one_lead(pg: Database) -> None:
    for round_ in range(ROUNDS):
        phone = f"1390000{round_:04d}"

        def store(i: int) -> None:
            store_batch(pg, None, [page(f"http://127.0.0.1/r{round_}/ad-{i}.html",
                                        f"初二数学一对一辅导，报名电话 {phone}，第{i}期")])

        assert _at_once(store) == []
    leads = list_leads(pg, all=True)
    assert len(leads) == ROUNDS
    assert sorted(len(lead.urls) for lead in leads) == [WRITERS] * ROUNDS


def test_postgresql_connections_run_without_jit(pg: Database) -> None:
    with pg.session() as session:
        assert session.scalar(text("SHOW jit")) == "off"
