"""Lead storage benchmark (not a test): daily list, lead page, grouping and export at patrol scale.

    .venv/bin/python benchmarks/leads_bench.py                   # 1,000,000 pages / 100,000 snapshots / 50,000 leads
    .venv/bin/python benchmarks/leads_bench.py --scale 0.01      # quick check
    .venv/bin/python benchmarks/leads_bench.py --pg postgresql+psycopg://postgres@127.0.0.1:55432/xj_bench

Runs on a fresh SQLite file, then on PostgreSQL when --pg or $XUNJIAN_TEST_PG_URL is given (in a
throwaway schema that is dropped afterwards). Rows are generated with core executemany inserts;
evidence files (WARC, PNG, text) are written for the leads that get exported. Printed per database:

  1. daily list (storage.views.list_leads for one day), against a naive N+1 ORM baseline;
  2. a lead page (storage.views.lead_detail, everything ``xunjian lead show`` loads);
  3. grouping new findings into existing leads through storage.repository.store_batch (findings/s);
  4. an export of confirmed leads with evidence (storage.export.run.run_export), and the batched
     row loading it uses against lead_detail per lead;
  5. peak RSS of the process.
Targets: daily list < 0.5 s, grouping >= 2,000 findings/s, memory < 500 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, select, text  # noqa: E402

from crawler.evidence.wacz import build_wacz  # noqa: E402
from crawler.evidence.warc import HttpExchange, warc_bytes  # noqa: E402
from storage.db import open_database  # noqa: E402
from storage.evidence import EvidenceStore  # noqa: E402
from storage.export.rows import load_rows  # noqa: E402
from storage.export.run import run_export  # noqa: E402
from storage.identifiers import name_core  # noqa: E402
from storage.models import Evidence, Finding, Lead, LeadIdentifier, Page, Snapshot, Source  # noqa: E402
from storage.records import FindingRecord, PageRecord  # noqa: E402
from storage.repository import store_batch  # noqa: E402
from storage.views import day_bounds, lead_detail, list_leads  # noqa: E402

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=timezone.utc)
DAYS = 30
CHUNK = 10_000
CJK = "青禾明德博雅星火启航智慧卓越华章文澜思源育才新航远志金榜睿达乐学优创天成鸿图嘉禾锦程知行致远弘毅书香" \
      "墨韵春晖秋实朗朗清风云帆海纳百川德馨志诚同心众志精英未来希望阳光彩虹蓝天白云松柏竹梅兰菊"
SUBJECTS = ("小学数学", "初中英语", "小学语文", "初中物理", "高中化学")
BASIS = "《关于进一步减轻义务教育阶段学生作业负担和校外培训负担的意见》"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label: str, func, *args, **kwargs):
    start = time.perf_counter()
    value = func(*args, **kwargs)
    elapsed = time.perf_counter() - start
    print(f"  {label}: {elapsed:.3f} s")
    return value, elapsed


def lead_name(rng: random.Random) -> str:
    return "".join(rng.choice(CJK) for _ in range(4)) + "教育科技有限公司"


def ad_text(name: str, phone: str, wechat: str, subject: str, n: int) -> str:
    return (f"{name}暑假{subject}培训班火热招生，名师授课，提分快。报名电话 {phone}，微信 {wechat}，"
            f"地址：北京市海淀区中关村大街{n % 300 + 1}号{n % 9 + 1}层。")


def bulk(connection, table, rows) -> None:
    if rows:
        connection.execute(table.insert(), rows)


class Generator:
    """Writes pages, snapshots, findings, leads, identifiers and evidence rows in chunks."""

    def __init__(self, db, scale: float, data_dir: Path, exported: int, seed: int = 7) -> None:
        self.db, self.data_dir = db, data_dir
        self.pages = max(1000, int(1_000_000 * scale))
        self.snapshots = max(100, int(100_000 * scale))
        self.leads = max(50, int(50_000 * scale))
        self.exported = exported
        self.rng = random.Random(seed)
        self.names = [lead_name(self.rng) for _ in range(self.leads)]
        self.store = EvidenceStore(data_dir)

    def lead_of(self, snapshot_id: int) -> int:  # 1-based ids; every lead has ~2 snapshots
        return (snapshot_id - 1) % self.leads + 1

    def phone(self, lead_id: int) -> str:
        return f"139{lead_id:08d}"

    def fetched(self, snapshot_id: int) -> datetime:
        return T0 + timedelta(days=snapshot_id % DAYS, minutes=snapshot_id % 1440)

    def run(self) -> None:
        with self.db.engine.begin() as c:
            bulk(c, Source.__table__, [{"id": 1, "name": "bench", "kind": "board", "config": {}}])
            self._pages(c)
            self._leads(c)
            self._snapshots(c)
            if c.dialect.name == "postgresql":
                for table in ("sources", "pages", "snapshots", "findings", "leads", "lead_identifiers", "evidence"):
                    c.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                   f"(SELECT coalesce(max(id), 1) FROM {table}))"))
                c.execute(text("ANALYZE"))
            else:
                c.execute(text("ANALYZE"))

    def _pages(self, c) -> None:
        for start in range(1, self.pages + 1, CHUNK):
            rows = []
            for page_id in range(start, min(start + CHUNK, self.pages + 1)):
                when = self.fetched(page_id)
                rows.append({"id": page_id, "url": f"https://board.example.cn/ad/{page_id}.html", "source_id": 1,
                             "first_seen": when, "last_seen": when, "last_status": 200, "last_snapshot_id": None,
                             "requested_url": f"https://board.example.cn/ad/{page_id}.html"})
            bulk(c, Page.__table__, rows)

    def _leads(self, c) -> None:
        rows = []
        for lead_id in range(1, self.leads + 1):
            ids = [s for s in (lead_id, lead_id + self.leads) if s <= self.snapshots]
            times = [self.fetched(s) for s in ids]
            rows.append({"id": lead_id, "key": f"phone:{self.phone(lead_id)}", "name": self.names[lead_id - 1],
                         "status": "confirmed" if lead_id <= self.exported else "new",
                         "severity": 3 + lead_id % 3, "score": (lead_id % 100) / 100, "categories": ["banned_ad"],
                         "first_seen": min(times), "last_seen": max(times), "merged_into_id": None,
                         "status_changed_at": None})
            if len(rows) == CHUNK:
                bulk(c, Lead.__table__, rows)
                rows = []
        bulk(c, Lead.__table__, rows)

    def _evidence_files(self, snapshot_id: int, url: str, body: str, when: datetime) -> list[dict]:
        html = f"<html><body>{body}</body></html>".encode()
        exchange = HttpExchange(url=url, requested_url=url, method="GET", protocol="HTTP/1.1", request_headers=[],
                                status=200, response_headers=[("Content-Type", "text/html; charset=utf-8")],
                                body=html, fetched_at=when)
        png = hashlib.sha256(str(snapshot_id).encode()).digest() * 200  # stands in for screenshot bytes
        made = [self.store.put(warc_bytes(exchange, "leads-bench"), kind="warc", ext="warc",
                               media_type="application/warc", captured_at=when)[0],
                self.store.put(png, kind="screenshot", ext="png", media_type="image/png", captured_at=when)[0],
                self.store.put(body.encode(), kind="text", ext="txt", media_type="text/plain", captured_at=when)[0]]
        return [{"snapshot_id": snapshot_id, "kind": r.kind, "sha256": r.sha256, "path": r.path, "size": r.size,
                 "media_type": r.media_type, "captured_at": r.captured_at} for r in made]

    def _snapshots(self, c) -> None:
        for start in range(1, self.snapshots + 1, CHUNK):
            snaps, findings, idents, evidence, links = [], [], [], [], []
            for sid in range(start, min(start + CHUNK, self.snapshots + 1)):
                lead_id, when = self.lead_of(sid), self.fetched(sid)
                name, subject = self.names[lead_id - 1], SUBJECTS[sid % len(SUBJECTS)]
                wechat = f"wx{lead_id:08d}"
                body = ad_text(name, self.phone(lead_id), wechat, subject, sid)
                url = f"https://board.example.cn/ad/{sid}.html"
                snaps.append({"id": sid, "page_id": sid, "content_hash": hashlib.sha256(body.encode()).hexdigest(),
                              "fetched_at": when, "status": 200, "final_url": url, "encoding": "utf-8",
                              "title": name, "text": body, "headers": {}, "fields": {}, "image_urls": [],
                              "categories": ["banned_ad"], "score": 0.8, "rules_version": "bench-1"})
                for offset, (snippet, rule) in enumerate(((subject, "BA1.subject-grade"), ("提分快", "EM2.promise"))):
                    pos = body.index(snippet)
                    findings.append({"snapshot_id": sid, "lead_id": lead_id, "category": "banned_ad",
                                     "subcategory": "subject", "rule": rule, "severity": 5 - offset,
                                     "start_offset": pos, "end_offset": pos + len(snippet), "text": snippet,
                                     "normalized": snippet, "explanation": "面向中小学生的学科类培训广告",
                                     "basis": BASIS, "rules_version": "bench-1"})
                for kind, value, raw in (("phone", self.phone(lead_id), self.phone(lead_id)),
                                         ("wechat", wechat, wechat), ("name", name_core(name), name),
                                         ("url", url, url)):
                    idents.append({"lead_id": lead_id, "page_id": sid, "kind": kind, "value": value, "raw": raw,
                                   "first_seen": when, "last_seen": when})
                if lead_id <= self.exported:
                    evidence.extend(self._evidence_files(sid, url, body, when))
                else:
                    evidence.extend({"snapshot_id": sid, "kind": kind, "sha256": "0" * 64, "path": f"missing/{sid}.{kind}",
                                     "size": 0, "media_type": "application/octet-stream", "captured_at": when}
                                    for kind in ("warc", "screenshot", "text"))
                links.append({"pid": sid, "sid": sid})
            bulk(c, Snapshot.__table__, snaps)
            bulk(c, Finding.__table__, findings)
            bulk(c, LeadIdentifier.__table__, idents)
            bulk(c, Evidence.__table__, evidence)
            c.execute(text("UPDATE pages SET last_snapshot_id = :sid WHERE id = :pid"), links)


def naive_daily(db, day) -> int:
    """Baseline: every lead through the ORM, its findings' snapshots loaded one lead at a time."""
    start, end = day_bounds(day)
    count = 0
    with db.session() as session:
        for lead in session.scalars(select(Lead).where(Lead.merged_into_id.is_(None))):
            times = session.scalars(select(Snapshot.fetched_at).join(Finding, Finding.snapshot_id == Snapshot.id)
                                    .where(Finding.lead_id == lead.id)).all()
            if any(start <= t < end for t in times) or start <= lead.last_seen < end:
                count += 1
    return count


def grouping_records(gen: Generator, count: int) -> list[PageRecord]:
    records = []
    for n in range(count):
        lead_id = gen.rng.randint(gen.exported + 1, gen.leads)  # keep exported leads untouched
        name, subject = gen.names[lead_id - 1], SUBJECTS[n % len(SUBJECTS)]
        body = ad_text(name, gen.phone(lead_id), f"wx{lead_id:08d}", subject, n) + f"（第{n}期）"
        pos, promise = body.index(subject), body.index("提分快")
        url = f"https://board.example.cn/new/{n}.html"
        records.append(PageRecord(
            source="bench", url=url, requested_url=url, final_url=url, fetched_at=T0 + timedelta(days=DAYS),
            status=200, headers={}, encoding="utf-8", title=name, text=body, fields={"机构名称": [name]},
            image_urls=[], content_hash=hashlib.sha256(body.encode()).hexdigest(), categories=["banned_ad"],
            score=0.8, rules_version="bench-1",
            findings=[FindingRecord("banned_ad", "subject", "BA1.subject-grade", 5, pos, pos + len(subject),
                                    subject, subject, "面向中小学生的学科类培训广告", BASIS),
                      FindingRecord("exaggerated_marketing", "promise", "EM2.promise", 4, promise, promise + 3,
                                    "提分快", "提分快", "承诺培训效果", BASIS)]))
    return records


def bench(url: str, scale: float, work: Path, args) -> None:
    db = open_database(url)
    exported = min(1000, max(10, int(50_000 * scale) // 50))
    gen = Generator(db, scale, work / "data", exported)
    print(f"\n== {db.engine.dialect.name}: {gen.pages:,} pages / {gen.snapshots:,} snapshots / "
          f"{gen.leads:,} leads ({exported} confirmed with evidence files)")
    timed("generate", gen.run)
    day = (T0 + timedelta(days=DAYS // 2)).astimezone(timezone(timedelta(hours=8))).date()
    list_leads(db, day=day)  # warm the caches once
    rows, fast = timed(f"daily list {day} (list_leads)", list_leads, db, day=day)
    if not args.no_baseline:
        count, slow = timed("daily list, naive N+1 ORM baseline", naive_daily, db, day)
        assert count == len(rows), (count, len(rows))
        print(f"    {len(rows)} leads; real query is {slow / fast:.0f}x faster than the baseline")
    big = exported + 1
    timed(f"lead page (lead_detail {big})", lead_detail, db, big)
    wanted = max(100, int(10_000 * min(1.0, scale * args.grouping_factor)))
    records = grouping_records(gen, wanted // 2)  # two findings per page
    stored, started = 0, time.perf_counter()
    for start in range(0, len(records), 50):
        stored += store_batch(db, None, records[start:start + 50]).new_findings
        if time.perf_counter() - started > args.grouping_seconds:
            break
    elapsed = time.perf_counter() - started
    with db.session() as session:
        created = session.scalar(select(func.count()).select_from(Lead).where(Lead.id > gen.leads))
    print(f"  grouping: {stored:,} findings ({stored // 2:,} pages) in {elapsed:.2f} s = "
          f"{stored / elapsed:,.0f} findings/s, {stored / 2 / elapsed:,.0f} pages/s "
          f"({created} new leads; {'stopped at time limit' if stored < wanted else 'all stored'})")
    ids = list(range(1, exported + 1))
    if not args.no_baseline:
        _, batched = timed(f"load {exported} export rows (batched)", load_rows, db, ids, gen.data_dir)
        _, naive = timed(f"load {exported} leads via lead_detail each (baseline)",
                         lambda: [lead_detail(db, i) for i in ids])
        print(f"    batched loading is {naive / batched:.1f}x faster")
    result, _ = timed(f"export {exported} confirmed leads (xlsx + evidence zip{', WACZ' if args.wacz else ''})",
                      run_export, db, out_dir=work / "export", fmt="xlsx", status="confirmed", by="bench",
                      data_root=gen.data_dir, wacz_builder=build_wacz if args.wacz else None)
    size = result.package.path.stat().st_size / 1e6
    print(f"    {result.package.files:,} files, {size:.1f} MB, {len(result.referred)} leads referred")
    print(f"  peak RSS so far: {peak_mb():.0f} MB")
    db.dispose()


def pg_schema(pg_url: str):
    from sqlalchemy.engine import make_url

    schema = f"leads_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return admin, schema, url.render_as_string(hide_password=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full data set (default 1)")
    parser.add_argument("--pg", default=os.environ.get("XUNJIAN_TEST_PG_URL"), help="PostgreSQL URL")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-baseline", action="store_true", help="skip the naive baselines")
    parser.add_argument("--wacz", action="store_true", help="build a WACZ per exported lead")
    parser.add_argument("--grouping-seconds", type=float, default=120.0, help="stop grouping after this long")
    parser.add_argument("--grouping-factor", type=float, default=100.0,
                        help="grouping uses min(10000, 10000*scale*factor) findings (default: 10,000 from scale 0.01)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="leads-bench-") as tmp:
        if not args.no_sqlite:
            work = Path(tmp) / "sqlite"
            bench(f"sqlite:///{work / 'bench.db'}", args.scale, work, args)
        if args.pg:
            admin, schema, url = pg_schema(args.pg)
            try:
                bench(url, args.scale, Path(tmp) / "pg", args)
            finally:
                with admin.begin() as connection:
                    connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    print(f"\npeak RSS: {peak_mb():.0f} MB (target < 500 MB); targets: daily list < 0.5 s, grouping >= 2,000 findings/s")


if __name__ == "__main__":
    main()
