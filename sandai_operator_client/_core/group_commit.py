"""Group commit: many concurrent callers, one flush at a time, everything queued goes in the next flush.

Whoever finds no flush running becomes the flusher; callers arriving meanwhile queue up and are served by
the next flush, which a finished flusher hands to the oldest waiting caller (so no caller flushes for
others indefinitely). A caller cancelled while queued withdraws its items: nothing of it is sent. Once a
flush has started it runs to completion, shielded: a half-written pipeline would leave unread replies on
the connection. No background task is involved, so this works under asyncio and trio alike.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Generic, List, Optional, Sequence, TypeVar

import anyio

__all__ = ("GroupCommit",)

T = TypeVar("T")
R = TypeVar("R")


class _Pending(Generic[T, R]):
    __slots__ = ("done", "error", "items", "promoted", "results", "wake")

    def __init__(self, items: Sequence[T]) -> None:
        self.items = items
        self.results: List[R] = []
        self.error: Optional[BaseException] = None
        self.done = False
        self.promoted = False
        self.wake = anyio.Event()


class GroupCommit(Generic[T, R]):
    """Coalesce concurrent ``submit`` calls into batched ``flush`` calls.

    ``flush(items)`` returns one result per item, or raises an ``Exception`` that every caller of that
    batch then receives.
    """

    def __init__(self, flush: Callable[[List[T]], Awaitable[List[R]]]) -> None:
        self._flush = flush
        self._queue: List[_Pending[T, R]] = []
        self._flushing = False

    @property
    def busy(self) -> bool:
        """A flush is running or handed on."""
        return self._flushing

    async def submit(self, items: Sequence[T]) -> List[R]:
        """Have ``items`` flushed (with whatever else is queued); their results in order."""
        pending: _Pending[T, R] = _Pending(items)
        self._queue.append(pending)
        try:
            if self._flushing:
                await pending.wake.wait()
            if not pending.done:  # idle, or the lead was handed to us
                self._flushing = True
                await self._lead(pending)
        finally:
            if not pending.done:  # cancelled while queued: withdraw, and pass on a lead handed to us
                if pending in self._queue:
                    self._queue.remove(pending)
                if pending.promoted:
                    self._hand_off()
        if pending.error is not None:
            raise pending.error
        return pending.results

    def _hand_off(self) -> None:
        if self._queue:
            head = self._queue[0]
            head.promoted = True
            head.wake.set()
        else:
            self._flushing = False

    async def _lead(self, own: _Pending[T, R]) -> None:
        try:
            with anyio.CancelScope(shield=True):
                while not own.done:
                    batch, self._queue = self._queue, []
                    await self._flush_batch(batch)
        finally:
            self._hand_off()

    async def _flush_batch(self, batch: List[_Pending[T, R]]) -> None:
        error: Optional[BaseException] = None
        results: List[R] = []
        try:
            results = await self._flush([item for p in batch for item in p.items])
        except Exception as exc:  # every caller of the batch gets it
            error = exc
        offset = 0
        for p in batch:
            n = len(p.items)
            p.results, p.error = results[offset : offset + n], error
            offset += n
            p.done = True
            p.wake.set()
