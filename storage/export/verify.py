"""Re-checking an evidence package against its own manifest.

Every file listed in ``manifest-sha256.txt`` must be in the zip with that SHA-256;
every other file (apart from the two manifest files) is reported as added; the
package hash in ``package-sha256.txt`` must be the SHA-256 of the listing, and, when
the caller knows the hash printed at export time, equal to it.

A package is refused before any hash is computed when an entry could not be read
safely or unambiguously: a name that would land outside the target folder when
extracted (absolute, ``..``, backslash, drive letter, NUL), two names that one file
system would treat as the same file, encryption or an unknown compression method.
The manifest cannot vouch for such names, so they are refused whatever it lists.
Names in messages are shortened and their control characters escaped, so one
problem stays one line of reasonable length.
"""

from __future__ import annotations

import hashlib
import lzma
import re
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from storage.errors import StorageError
from storage.export.package import MANIFEST_SHA256, PACKAGE_SHA256

_LINE = re.compile(r"([0-9a-f]{64}) [ *](.+)")
_HEX = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
_DRIVE = re.compile(r"[A-Za-z]:")
_ENCRYPTED = 0x41  # general purpose flag bits 0 (encrypted) and 6 (strong encryption)
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
SHOWN_CHARS = 200


class PackageUnreadable(StorageError):
    """The package cannot be checked at all: not a readable zip, or entries unsafe to read."""


def shown(name: str) -> str:
    """``name`` for a one-line message: control characters escaped, cut after SHOWN_CHARS characters."""
    text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in name[:SHOWN_CHARS])
    return text + (f"…（共 {len(name)} 个字符）" if len(name) > SHOWN_CHARS else "")


def _unsafe_name(name: str) -> str | None:
    """Why extracting an entry called ``name`` could write outside the target folder, or None."""
    if "\x00" in name:
        return "含 NUL 字符"
    if "\\" in name:
        return "含反斜杠"
    if name.startswith("/"):
        return "是绝对路径"
    if _DRIVE.match(name):
        return "含盘符"
    if ".." in name.split("/"):
        return "含“..”路径段"
    return None


def _entry_problems(infos: list[zipfile.ZipInfo]) -> list[str]:
    """Every entry that must not be read: unsafe or clashing name, encryption, unknown compression."""
    problems = []
    seen: dict[str, str] = {}
    for info in infos:
        name = info.orig_filename  # zipfile cuts ``filename`` at a NUL
        reason = _unsafe_name(name)
        if reason:
            problems.append(f"文件名{reason}：{shown(name)}")
        key = unicodedata.normalize("NFC", name.rstrip("/")).casefold()
        if key not in seen:
            seen[key] = name
        elif seen[key] == name:
            problems.append(f"文件名重复（可能被追加）：{shown(name)}")
        else:
            problems.append(f"文件名与 {shown(seen[key])} 仅大小写或写法不同：{shown(name)}")
        if info.flag_bits & _ENCRYPTED:
            problems.append(f"文件已加密，无法校验：{shown(name)}")
        elif info.compress_type not in _METHODS:
            problems.append(f"文件使用了不支持的压缩方式（编号 {info.compress_type}）：{shown(name)}")
    return problems


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
            problems.append(f"清单 {MANIFEST_SHA256} 第 {number} 行重复列出文件：{shown(name)}")
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
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, lzma.LZMAError) as error:
        raise PackageUnreadable(f"无法读取证据包 {package}：{shown(str(error))}") from None
    return result


def _verify(archive: zipfile.ZipFile, result: VerifyResult, expected_hash: str | None) -> None:
    refused = _entry_problems(archive.infolist())
    if refused:
        more = f"（另有 {len(refused) - 1} 处同类问题）" if len(refused) > 1 else ""
        raise PackageUnreadable(f"拒绝校验证据包 {result.path}：{refused[0]}{more}")
    infos = [info for info in archive.infolist() if not info.is_dir()]
    names = {info.filename for info in infos}
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
            result.problems.append(f"文件被删除：{shown(name)}")
            continue
        actual = _entry_hash(archive, info)
        if actual != sha:
            result.problems.append(f"文件被修改：{shown(name)}（清单 SHA-256 {sha}，实际 {actual}）")
        result.files += 1
    for name in sorted(names - set(expected) - {MANIFEST_SHA256, PACKAGE_SHA256}):
        result.problems.append(f"多出文件（不在清单中）：{shown(name)}")
    _check_package_hash(archive, names, listing_hash, result)
    if expected_hash is not None and expected_hash.lower() != listing_hash:
        result.problems.append(f"包哈希与预期不符：预期 {expected_hash.lower()}，实际 {listing_hash}")
