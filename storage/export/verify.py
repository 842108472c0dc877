"""Re-checking an evidence package against its own manifest.

Every file listed in ``manifest-sha256.txt`` must be in the zip with that SHA-256;
every other file (apart from the two manifest files) is reported as added; the
package hash in ``package-sha256.txt`` must be the SHA-256 of the listing, and, when
the caller knows the hash printed at export time, equal to it.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from storage.errors import StorageError
from storage.export.package import MANIFEST_SHA256, PACKAGE_SHA256

_LINE = re.compile(r"([0-9a-f]{64}) [ *](.+)")
_HEX = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class PackageUnreadable(StorageError):
    """The file is not a zip that can be read at all."""


@dataclass
class VerifyResult:
    path: Path
    files: int = 0
    package_hash: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _entry_hash(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    digest = hashlib.sha256()
    with archive.open(info) as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _listing(data: bytes, problems: list[str]) -> dict[str, str]:
    expected: dict[str, str] = {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"清单 {MANIFEST_SHA256} 不是 UTF-8 文本，无法解析")
        return expected
    for number, line in enumerate(text.splitlines(), 1):
        match = _LINE.fullmatch(line)
        if match is None:
            problems.append(f"清单 {MANIFEST_SHA256} 第 {number} 行格式错误：{line[:80]!r}")
            continue
        sha, name = match.groups()
        if name in expected:
            problems.append(f"清单 {MANIFEST_SHA256} 第 {number} 行重复列出文件：{name}")
        expected[name] = sha
    return expected


def _check_package_hash(archive: zipfile.ZipFile, names: set[str], listing_hash: str,
                        result: VerifyResult) -> None:
    if PACKAGE_SHA256 not in names:
        result.problems.append(f"缺少包哈希文件 {PACKAGE_SHA256}")
        return
    line = archive.read(PACKAGE_SHA256).decode("utf-8", "replace").strip()
    match = _LINE.fullmatch(line)
    if match is None or match.group(2) != MANIFEST_SHA256:
        result.problems.append(f"包哈希文件 {PACKAGE_SHA256} 格式错误：{line[:100]!r}")
    elif match.group(1) != listing_hash:
        result.problems.append(
            f"包哈希不符：{PACKAGE_SHA256} 记载 {match.group(1)}，清单实际为 {listing_hash}"
        )


def verify_package(path: str | Path, expected_hash: str | None = None) -> VerifyResult:
    """Check every file of the package at ``path``; problems are one Chinese line each."""
    package = Path(path)
    result = VerifyResult(package)
    if expected_hash is not None and not _HEX.fullmatch(expected_hash.lower()):
        raise StorageError(f"预期包哈希应为 64 位十六进制 SHA-256，实际为 {expected_hash!r}")
    try:
        archive = zipfile.ZipFile(package)
    except FileNotFoundError:
        raise PackageUnreadable(f"找不到证据包 {package}") from None
    except (zipfile.BadZipFile, OSError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise PackageUnreadable(f"无法读取证据包 {package}：不是有效的 zip 文件（{reason}）") from None
    try:
        with archive:
            _verify(archive, result, expected_hash)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise PackageUnreadable(f"无法读取证据包 {package}：{error}") from None
    return result


def _verify(archive: zipfile.ZipFile, result: VerifyResult, expected_hash: str | None) -> None:
    infos = [info for info in archive.infolist() if not info.is_dir()]
    counts = Counter(info.filename for info in infos)
    for name, count in sorted(counts.items()):
        if count > 1:
            result.problems.append(f"同名文件出现 {count} 次（可能被追加）：{name}")
    names = set(counts)
    if MANIFEST_SHA256 not in names:
        result.problems.append(f"缺少清单文件 {MANIFEST_SHA256}，无法校验")
        return
    listing = archive.read(MANIFEST_SHA256)
    listing_hash = hashlib.sha256(listing).hexdigest()
    result.package_hash = listing_hash
    expected = _listing(listing, result.problems)
    by_name = {info.filename: info for info in infos}
    for name, sha in expected.items():
        info = by_name.get(name)
        if info is None:
            result.problems.append(f"文件被删除：{name}")
            continue
        actual = _entry_hash(archive, info)
        if actual != sha:
            result.problems.append(f"文件被修改：{name}（清单 SHA-256 {sha}，实际 {actual}）")
        result.files += 1
    for name in sorted(names - set(expected) - {MANIFEST_SHA256, PACKAGE_SHA256}):
        result.problems.append(f"多出文件（不在清单中）：{name}")
    _check_package_hash(archive, names, listing_hash, result)
    if expected_hash is not None and expected_hash.lower() != listing_hash:
        result.problems.append(f"包哈希与预期不符：预期 {expected_hash.lower()}，实际 {listing_hash}")
