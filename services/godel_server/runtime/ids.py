"""Random identifiers (version-4 UUIDs) for rows and events, from the operating system's CSPRNG.

`uuid.uuid4()` asks the kernel for 16 bytes per identifier (a getrandom call each, ~2.4 µs);
a workflow step alone takes three (its member and two events). `new_id` takes the same bytes
from a 4 KiB buffer filled by one call, refilled when used up and dropped in a forked child
(which would otherwise hand out its parent's next identifiers)."""

from __future__ import annotations

import os
import threading

__all__ = ["new_id"]

_BUFFER_BYTES = 4096
_lock = threading.Lock()
_buffer = b""
_offset = 0


def _reset() -> None:
    global _buffer, _offset
    _buffer, _offset = b"", 0


os.register_at_fork(after_in_child=_reset)


def _random16() -> bytes:
    global _buffer, _offset
    with _lock:
        if _offset + 16 > len(_buffer):
            _buffer, _offset = os.urandom(_BUFFER_BYTES), 0
        start = _offset
        _offset = start + 16
        return _buffer[start : start + 16]


def new_id() -> str:
    """A random UUID (version 4, RFC 4122 variant) in its canonical 36-character form."""
    raw = bytearray(_random16())
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
