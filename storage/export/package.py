"""The evidence package: one zip that enforcement can check file by file.

Layout (all paths inside the zip)::

    说明.txt                               what this is and how to verify it
    线索清单.json                           every lead with findings and evidence paths
    线索-000123-<机构名称>/
        摘要.txt                            who, what, where, when, why, legal basis, file hashes
        findings.json                       the lead with its findings (English keys)
        快照-000456/网页存档.warc           raw HTTP exchange as archived
        快照-000456/网页截图.png            full-page screenshot
        快照-000456/提取文本.txt            extracted text
        网页存档-线索-000123.wacz           the lead's WARCs as one replayable WACZ (when a builder is given)
    manifest.json                          path, SHA-256 and size of every file above
    manifest-sha256.txt                    the same in ``sha256sum`` format (plus manifest.json)
    package-sha256.txt                     SHA-256 of manifest-sha256.txt: the package hash

Every evidence file is checked against the SHA-256 recorded when it was captured
while it is copied; a missing or altered file stops the export. The zip is built
with fixed timestamps and order, so the same export twice is byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any

from storage.errors import StorageError
from storage.export.rows import LeadRow, folder_name
from storage.export.stable_zip import DigestMismatch, StableZipWriter, normalise_wacz
from storage.export.summary import lead_summary, package_readme
from storage.export.writers import json_bytes, lead_json, local

PACKAGE_FORMAT = "xunjian-evidence-package/1"
MANIFEST_JSON = "manifest.json"
MANIFEST_SHA256 = "manifest-sha256.txt"
PACKAGE_SHA256 = "package-sha256.txt"
README = "说明.txt"
LEAD_LIST = "线索清单.json"
SUMMARY = "摘要.txt"
FINDINGS = "findings.json"
EVIDENCE_NAMES = {"warc": "网页存档", "screenshot": "网页截图", "text": "提取文本"}

WaczBuilder = Callable[[list[Path], Path], Any]


class PackageError(StorageError):
    """The package could not be built; the message names the lead and file."""


@dataclass
class ManifestEntry:
    path: str
    sha256: str
    size: int
    lead_id: int | None = None
    kind: str | None = None
    captured_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if value is not None}


@dataclass
class PackageResult:
    path: Path
    package_hash: str
    leads: int
    files: int
    evidence_files: int
    entries: list[ManifestEntry] = field(default_factory=list)


def manifest_sha256_text(entries: list[ManifestEntry]) -> bytes:
    """``sha256sum`` format: ``<hex>  <path>`` per line."""
    return "".join(f"{e.sha256}  {e.path}\n" for e in entries).encode("utf-8")


def package_hash_line(package_hash: str) -> bytes:
    return f"{package_hash}  {MANIFEST_SHA256}\n".encode("utf-8")


def evidence_path(row: LeadRow, snapshot_id: int, kind: str, source: Path) -> str:
    suffix = "".join(source.suffixes[-1:]) or ".bin"
    return f"{folder_name(row)}/快照-{snapshot_id:06d}/{EVIDENCE_NAMES.get(kind, kind)}{suffix}"


class _Builder:
    def __init__(self, writer: StableZipWriter, wacz_builder: WaczBuilder | None, scratch: Path) -> None:
        self.writer = writer
        self.wacz_builder = wacz_builder
        self.scratch = scratch
        self.entries: list[ManifestEntry] = []
        self.evidence_paths: dict[tuple[int, str], str] = {}
        self.evidence_files = 0

    def add_bytes(self, name: str, data: bytes, lead_id: int | None = None) -> None:
        sha, size = self.writer.write_bytes(name, data)
        self.entries.append(ManifestEntry(name, sha, size, lead_id))

    def add_evidence(self, row: LeadRow) -> None:
        for item in row.evidence:
            name = evidence_path(row, item.snapshot_id, item.kind, item.path)
            try:
                sha, size = self.writer.write_file(name, item.path, item.sha256)
            except DigestMismatch as error:
                raise PackageError(
                    f"线索 {row.id} 的证据文件 {item.path} 已被改动：登记的 SHA-256 为 {error.expected}，"
                    f"现为 {error.actual}"
                ) from None
            except FileNotFoundError:
                raise PackageError(f"线索 {row.id} 的证据文件 {item.path} 不存在（数据目录是否正确？）") from None
            except PermissionError:
                raise PackageError(f"线索 {row.id} 的证据文件 {item.path} 无权读取") from None
            except OSError as error:
                raise PackageError(
                    f"线索 {row.id} 的证据文件 {item.path} 无法读取（{error.strerror or error}）"
                ) from None
            self.entries.append(ManifestEntry(name, sha, size, row.id, item.kind,
                                              local(item.captured_at).isoformat()))
            self.evidence_paths[(item.snapshot_id, item.kind)] = name
            self.evidence_files += 1

    def add_wacz(self, row: LeadRow) -> str | None:
        warcs = list(dict.fromkeys(item.path for item in row.evidence if item.kind == "warc"))
        if self.wacz_builder is None or not warcs:
            return None
        target = self.scratch / f"lead-{row.id}.wacz"
        try:
            self.wacz_builder(warcs, target)
        except Exception as error:  # the builder's own errors are one line naming the file
            raise PackageError(f"线索 {row.id} 的 WACZ 生成失败：{error}") from None
        created = max(item.captured_at for item in row.evidence if item.kind == "warc")
        normalise_wacz(target, created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        name = f"{folder_name(row)}/网页存档-线索-{row.id:06d}.wacz"
        sha, size = self.writer.write_file(name, target)
        target.unlink()
        self.entries.append(ManifestEntry(name, sha, size, row.id, "wacz"))
        return name

    def add_lead(self, row: LeadRow) -> None:
        self.add_evidence(row)
        wacz = self.add_wacz(row)
        folder = folder_name(row)
        own_paths = {key: path for key, path in self.evidence_paths.items()
                     if path.startswith(folder + "/")}
        record = lead_json(row, own_paths)
        if wacz:
            record["wacz"] = wacz
        self.add_bytes(f"{folder}/{FINDINGS}",
                       (json.dumps(record, ensure_ascii=False, indent=2) + "\n").encode("utf-8"), row.id)
        self.add_bytes(f"{folder}/{SUMMARY}", lead_summary(row, own_paths, wacz).encode("utf-8"), row.id)


def build_package(
    rows: list[LeadRow],
    out_path: Path,
    *,
    selection: dict[str, str | None],
    generator: str,
    wacz_builder: WaczBuilder | None = None,
) -> PackageResult:
    """Write the evidence package for ``rows`` to ``out_path`` (atomically) and return its hash."""
    folders = [folder_name(row) for row in rows]
    if len(set(folders)) != len(folders):
        raise PackageError("导出的线索中有重复编号")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(f".partial-{os.getpid()}-{out_path.name}")
    try:
        with tempfile.TemporaryDirectory(prefix="xunjian-export-") as scratch, StableZipWriter(partial) as writer:
            builder = _Builder(writer, wacz_builder, Path(scratch))
            for row in rows:
                builder.add_lead(row)
            builder.add_bytes(LEAD_LIST, json_bytes(rows, builder.evidence_paths))
            builder.add_bytes(README, package_readme(rows, selection, generator).encode("utf-8"))
            manifest = {
                "format": PACKAGE_FORMAT,
                "generator": generator,
                "selection": selection,
                "leads": [row.id for row in rows],
                "files": [entry.as_dict() for entry in builder.entries],
            }
            builder.add_bytes(MANIFEST_JSON, (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode())
            listing = manifest_sha256_text(builder.entries)
            package_hash = hashlib.sha256(listing).hexdigest()
            writer.write_bytes(MANIFEST_SHA256, listing)
            writer.write_bytes(PACKAGE_SHA256, package_hash_line(package_hash))
            entries = list(builder.entries)
            evidence_files = builder.evidence_files
        os.replace(partial, out_path)
    except OSError as error:
        raise PackageError(f"无法写入证据包 {out_path}（{error.strerror or error}）") from None
    finally:
        partial.unlink(missing_ok=True)
    return PackageResult(out_path, package_hash, len(rows), len(entries) + 2, evidence_files, entries)
