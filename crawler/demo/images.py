"""Small placeholder PNG images for the demo pages, built with the standard library only."""

from __future__ import annotations

import hashlib
import struct
import zlib

WIDTH = 64
HEIGHT = 40


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def placeholder_png(name: str) -> bytes:
    """A solid-colour WIDTH x HEIGHT PNG whose colour is derived from ``name`` (stable across runs)."""
    red, green, blue = hashlib.sha256(name.encode("utf-8")).digest()[:3]
    row = b"\x00" + bytes((red, green, blue)) * WIDTH
    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(row * HEIGHT))
        + _chunk(b"IEND", b"")
    )
