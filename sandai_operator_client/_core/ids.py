"""Task ids: random (version 4) UUID strings, drawn from a per-thread pool of random bytes."""

from __future__ import annotations

import os
import threading

__all__ = ("new_uuid4",)


class _RandomPool(threading.local):
    """Random bytes drawn from ``os.urandom`` 4 KiB at a time, per thread (threads never share bytes)."""

    def __init__(self) -> None:
        self.data = bytearray()


_random = _RandomPool()


def _forget_pooled_randomness() -> None:
    global _random
    _random = _RandomPool()  # a forked child must never reuse its parent's bytes


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pooled_randomness)


def new_uuid4() -> str:
    """A random (version 4) UUID string, as ``str(uuid.uuid4())`` but without building a UUID object.

    One system call per 256 ids instead of one per id. A forked child never reuses its parent's
    pooled bytes (the pool is dropped after a fork).
    """
    data = _random.data
    if len(data) < 16:
        data = _random.data = bytearray(os.urandom(4096))
    raw = data[-16:]
    del data[-16:]
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
