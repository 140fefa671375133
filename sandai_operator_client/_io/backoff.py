"""Retrying while a Redis server is away: exponential back-off, 50 ms doubling up to 1 s."""

from __future__ import annotations

from typing import Awaitable, Callable, TypeVar

import anyio

from .redis import ConnectionLost

__all__ = ("Backoff", "retry_while_disconnected")

T = TypeVar("T")


class Backoff:
    """The pause before the next attempt; ``delay`` is what the next ``wait`` will sleep."""

    def __init__(self, first: float = 0.05, limit: float = 1.0) -> None:
        self.delay = first
        self.last = 0.0  # the pause the last wait slept (0: none yet)
        self._limit = limit

    async def wait(self) -> None:
        """Sleep, then double the next pause (up to the limit)."""
        self.last = self.delay
        await anyio.sleep(self.delay)
        self.delay = min(self.delay * 2, self._limit)


async def retry_while_disconnected(operation: Callable[[], Awaitable[T]]) -> T:
    """Run ``operation`` until it does not raise ``ConnectionLost``. Bound it with a cancel scope."""
    backoff = Backoff()
    while True:
        try:
            return await operation()
        except ConnectionLost:
            await backoff.wait()
