"""Zip files whose bytes depend only on what goes in: fixed timestamps, modes and entry order.

Writing the same files in the same order twice gives byte-identical archives, so an
export's hash can be reproduced. ``normalise_wacz`` does the same for a WACZ built
by the ``wacz`` tool, which stamps the current time into its entries and into
``datapackage.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

FIXED_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644 << 16
# Already compressed: deflating them again only costs time.
STORED_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".gz", ".zip", ".wacz")
ZIP64_LIMIT = (1 << 31) - 1
_CHUNK = 1 << 20


class DigestMismatch(Exception):
    """A file's content does not have the SHA-256 it was expected to have."""

    def __init__(self, name: str, expected: str, actual: str) -> None:
        super().__init__(name)
        self.name, self.expected, self.actual = name, expected, actual


def entry(name: str, compress: bool | None = None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, FIXED_TIME)
    info.create_system = 3
    info.external_attr = FILE_MODE
    if compress is None:
        compress = not name.lower().endswith(STORED_SUFFIXES)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    return info


class StableZipWriter:
    """Adds entries with fixed metadata and returns each one's SHA-256 and size."""

    def __init__(self, path: Path) -> None:
        self.zip = zipfile.ZipFile(path, "w", allowZip64=True)
        self.names: set[str] = set()

    def _claim(self, name: str) -> None:
        if name in self.names:
            raise ValueError(f"压缩包中已有同名文件：{name}")
        self.names.add(name)

    def write_bytes(self, name: str, data: bytes) -> tuple[str, int]:
        self._claim(name)
        self.zip.writestr(entry(name), data)
        return hashlib.sha256(data).hexdigest(), len(data)

    def write_file(self, name: str, source: Path, expected_sha256: str | None = None) -> tuple[str, int]:
        """Copy ``source`` in chunks; raises DigestMismatch if it no longer has ``expected_sha256``."""
        self._claim(name)
        digest = hashlib.sha256()
        size = 0
        with open(source, "rb") as handle, self.zip.open(
            entry(name), "w", force_zip64=source.stat().st_size > ZIP64_LIMIT
        ) as out:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        actual = digest.hexdigest()
        if expected_sha256 is not None and actual != expected_sha256.lower():
            raise DigestMismatch(name, expected_sha256, actual)
        return actual, size

    def close(self) -> None:
        self.zip.close()

    def __enter__(self) -> StableZipWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stable_page_ids(data: bytes) -> bytes:
    """Replace the random page ids the wacz tool assigns with ids derived from each page line."""
    lines = []
    for number, line in enumerate(data.decode("utf-8").splitlines()):
        page = json.loads(line)
        if "id" in page and "url" in page:
            seed = f"{number}\n{page.get('url')}\n{page.get('ts')}".encode("utf-8")
            page["id"] = hashlib.sha256(seed).hexdigest()[:22]
        lines.append(json.dumps(page, ensure_ascii=False) + "\n")
    return "".join(lines).encode("utf-8")


def normalise_wacz(path: Path, created: str) -> None:
    """Rewrite the WACZ at ``path`` so its bytes depend only on its WARCs and page list.

    Entry times are fixed, page ids are derived from the pages, ``created`` replaces the
    build time in ``datapackage.json``, whose per-file hashes and sizes, and the
    ``datapackage-digest.json`` over it, are recomputed. Entry order and per-entry
    compression are kept, so replay tools read it as before.
    """
    with zipfile.ZipFile(path) as source:
        entries = [(info, source.read(info)) for info in source.infolist()]
    contents = {info.filename: data for info, data in entries}
    for name, data in contents.items():
        if name.startswith("pages/") and name.endswith(".jsonl"):
            contents[name] = _stable_page_ids(data)
    if "datapackage.json" in contents:
        package = json.loads(contents["datapackage.json"])
        for resource in package.get("resources", []):
            data = contents.get(resource.get("path"))
            if data is not None:
                resource["hash"] = "sha256:" + hashlib.sha256(data).hexdigest()
                resource["bytes"] = len(data)
        package["created"] = created
        contents["datapackage.json"] = json.dumps(package, indent=2).encode("utf-8")
        if "datapackage-digest.json" in contents:
            digest = json.loads(contents["datapackage-digest.json"])
            digest["hash"] = "sha256:" + hashlib.sha256(contents["datapackage.json"]).hexdigest()
            contents["datapackage-digest.json"] = json.dumps(digest, indent=2).encode("utf-8")
    partial = path.with_name(f".normalise-{os.getpid()}-{path.name}")
    try:
        with zipfile.ZipFile(partial, "w", allowZip64=True) as target:
            for info, _ in entries:
                stored = info.compress_type == zipfile.ZIP_STORED
                target.writestr(entry(info.filename, not stored), contents[info.filename])
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
