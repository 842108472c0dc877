"""Evidence files on disk and their rows in the database.

Files live under ``<data>/evidence/sha256/ab/cd/<sha256>.<ext>``, where ``<data>`` is the data
directory (``$XUNJIAN_DATA_DIR``, default ``./data``). The path is derived from the SHA-256 of the
content, so a file is written once, never rewritten, and anyone can check it against its name and
against the ``evidence`` table. Writes go to a temporary file in the target directory that is then
renamed into place, so a crash never leaves a half-written evidence file under its final name.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select

from storage.db import Database
from storage.errors import StorageError
from storage.models import EVIDENCE_KINDS, Evidence, Page, Snapshot
from storage.records import EvidenceRecord

DATA_DIR_ENV = "XUNJIAN_DATA_DIR"
DEFAULT_DATA_DIR = "data"
EVIDENCE_SUBDIR = "evidence"
_CHUNK = 1 << 20
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def data_dir(value: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``value``, else ``$XUNJIAN_DATA_DIR``, else ``./data`` (made absolute)."""
    chosen = value or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().absolute()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: str | os.PathLike[str], sha256: str) -> bool:
    """True when ``path`` exists and its content still has the SHA-256 ``sha256``."""
    try:
        return sha256_file(path) == sha256.lower()
    except OSError:
        return False


def relative_path(sha256: str, ext: str) -> str:
    """Where content with this hash lives, relative to the data directory ('/'-separated)."""
    return f"{EVIDENCE_SUBDIR}/sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}.{ext}"


class EvidenceStore:
    """Content-addressed, write-once file store under one data directory."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = data_dir(root)

    def absolute(self, relative: str) -> Path:
        return self.root.joinpath(*relative.split("/"))

    def put(self, data: bytes, *, kind: str, ext: str, media_type: str,
            captured_at: datetime | None = None) -> tuple[EvidenceRecord, bool]:
        """Store ``data``; returns its record and whether a new file was written.

        An existing file with the same hash is left untouched.
        """
        if kind not in EVIDENCE_KINDS:
            raise StorageError(f"未知的证据类型 {kind!r}（应为 {', '.join(EVIDENCE_KINDS)} 之一）")
        digest = sha256_bytes(data)
        relative = relative_path(digest, ext)
        target = self.absolute(relative)
        written = False
        if not target.exists():
            self._write_atomically(target, data)
            written = True
        record = EvidenceRecord(
            kind=kind,
            sha256=digest,
            path=relative,
            size=len(data),
            media_type=media_type,
            captured_at=captured_at or datetime.now(timezone.utc),
        )
        return record, written

    def _write_atomically(self, target: Path, data: bytes) -> None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".partial-", suffix=target.suffix)
        except OSError as error:
            raise StorageError(f"无法在 {target.parent} 创建证据文件：{error.strerror or error}") from error
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            # Read-only once written, and readable only by whom its directory admits (0700 under
            # xunjian's umask): evidence holds personal data.
            os.chmod(temp_name, 0o444 & target.parent.stat().st_mode)
            os.replace(temp_name, target)
        except OSError as error:
            try:
                os.unlink(temp_name)
            except OSError:
                pass
            raise StorageError(f"写入证据文件 {target} 失败：{error.strerror or error}") from error


@dataclass(frozen=True)
class EvidenceView:
    snapshot_id: int
    kind: str
    sha256: str
    path: Path  # absolute
    size: int
    media_type: str
    captured_at: datetime  # aware UTC


def evidence_for_snapshots(
    db: Database, snapshot_ids: Iterable[int], root: str | os.PathLike[str] | None = None
) -> list[EvidenceView]:
    """Evidence rows of these snapshots with absolute paths under the data directory ``root``.

    Ordered by snapshot id, then kind in the order warc, screenshot, text.
    """
    ids = sorted(set(snapshot_ids))
    base = data_dir(root)
    rows: list[Evidence] = []
    with db.session() as session:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows.extend(session.scalars(select(Evidence).where(Evidence.snapshot_id.in_(chunk))))
    order = {kind: index for index, kind in enumerate(EVIDENCE_KINDS)}
    rows.sort(key=lambda row: (row.snapshot_id, order.get(row.kind, len(order)), row.kind))
    return [
        EvidenceView(
            snapshot_id=row.snapshot_id,
            kind=row.kind,
            sha256=row.sha256,
            path=base.joinpath(*row.path.split("/")),
            size=row.size,
            media_type=row.media_type,
            captured_at=row.captured_at,
        )
        for row in rows
    ]


# One statement on a pooled connection: no Session is built for the question (asked per flagged page).
_HAS_EVIDENCE = (
    select(Snapshot.id, select(Evidence.id).where(Evidence.snapshot_id == Snapshot.id).exists())
    .join(Page, Page.id == Snapshot.page_id)
    .where(Page.url == bindparam("url"), Snapshot.content_hash == bindparam("content_hash"))
)


def snapshot_has_evidence(db: Database, url: str, content_hash: str) -> bool | None:
    """Whether the snapshot (``url``, ``content_hash``) has evidence rows; None if it is not stored."""
    with db.engine.connect() as connection:
        row = connection.execute(_HAS_EVIDENCE, {"url": url, "content_hash": content_hash}).first()
    return None if row is None else bool(row[1])


def evidence_rows(snapshot_id: int, records: Iterable[EvidenceRecord], present: set[str]) -> list[dict[str, Any]]:
    """Checked ``evidence`` rows for a snapshot, one per kind not in ``present`` (which grows)."""
    rows: list[dict[str, Any]] = []
    for item in records:
        if item.kind not in EVIDENCE_KINDS:
            raise StorageError(f"快照 {snapshot_id} 的证据类型 {item.kind!r} 无效（应为 {', '.join(EVIDENCE_KINDS)} 之一）")
        if not _SHA256_HEX.fullmatch(item.sha256):
            raise StorageError(f"快照 {snapshot_id} 的 {item.kind} 证据 sha256 不是 64 位十六进制：{item.sha256[:80]!r}")
        if item.captured_at.tzinfo is None or item.captured_at.utcoffset() is None:
            raise StorageError(f"快照 {snapshot_id} 的 {item.kind} 证据采集时间缺少时区：{item.captured_at.isoformat()}")
        if item.kind in present:
            continue
        present.add(item.kind)
        rows.append({"snapshot_id": snapshot_id, "kind": item.kind, "sha256": item.sha256, "path": item.path,
                     "size": int(item.size), "media_type": item.media_type, "captured_at": item.captured_at})
    return rows
