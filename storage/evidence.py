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
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, select

from storage.db import Database
from storage.errors import StorageError
from storage.models import EVIDENCE_KINDS, Evidence, Page, Snapshot
from storage.records import EvidenceRecord

DATA_DIR_ENV = "XUNJIAN_DATA_DIR"
DEFAULT_DATA_DIR = "data"
EVIDENCE_SUBDIR = "evidence"
_CHUNK = 1 << 20


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
            os.chmod(temp_name, 0o444)  # evidence is read-only once written
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


def snapshot_has_evidence(db: Database, url: str, content_hash: str) -> bool | None:
    """Whether the snapshot (``url``, ``content_hash``) has evidence rows; None if it is not stored."""
    with db.session() as session:
        snapshot_id = session.scalar(
            select(Snapshot.id)
            .join(Page, Page.id == Snapshot.page_id)
            .where(Page.url == url, Snapshot.content_hash == content_hash)
        )
        if snapshot_id is None:
            return None
        count = session.scalar(
            select(func.count(Evidence.id)).where(Evidence.snapshot_id == snapshot_id)
        )
        return bool(count)
