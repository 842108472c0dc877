"""Installed versions of xunjian and the libraries its records name (User-Agent, WARC software field)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


XUNJIAN_VERSION = package_version("xunjian")
