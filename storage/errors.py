"""Exceptions raised by the storage layer.

Every message is a single line of Simplified Chinese naming what failed and
where, so the command line can print it as-is to an inspector.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class for storage failures; ``str()`` is a one-line Chinese message."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(part.strip() for part in message.splitlines() if part.strip()))


class DatabaseUnavailable(StorageError):
    """The database cannot be opened, reached, written or migrated."""
