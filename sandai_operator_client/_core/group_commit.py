"""Group commit: many concurrent callers, one flush at a time, everything queued goes in the next flush.

Whoever finds no flush running becomes the flusher; callers arriving meanwhile queue up and are served by
the next flush, which a finished flusher hands to the oldest waiting caller (so no caller flushes for
others indefinitely). A caller cancelled while queued withdraws its items: nothing of it is sent. Once a
flush that carries other callers' items has started it runs to completion, shielded (they wait for its
results); a flush of the flusher's own items alone is as cancellable as the flush function makes it
(``CommandChannel`` shields its pipelines itself: a half-written one would leave unread replies on the
connection). No background task is involved, so this works under asyncio and trio alike.

A queued caller is two list entries (its items, its wakeup) and waits on its wakeup (``loop.py``: on
asyncio a bare future), which receives its results, the flush's error, or the lead. Rule: nothing more
per queued caller (the cyclic GC walks all they hold; tests/faults/test_budgets.py counts a pending
call's objects).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Generic, List, Sequence, TypeVar

import anyio

from .._io.loop import Wakeup, new_wakeup, wake

__all__ = ("GroupCommit",)

T = TypeVar("T")
R = TypeVar("R")

_LEAD = object()  # a queued caller's wakeup value: the flush was handed to it


def _led(wakeup: Wakeup) -> bool:
    return wakeup.done() and not wakeup.cancelled() and wakeup.result() is _LEAD


class GroupCommit(Generic[T, R]):
    """Coalesce concurrent ``submit`` calls into batched ``flush`` calls.

    ``flush(batches)`` gets the items of each caller it serves (the flusher's first, then the queued
    callers' in arrival order; handed over as they came, so a lazy sequence stays lazy) and returns one
    result per item, in that order, or raises an ``Exception`` that every caller of that batch then
    receives (interrupted by anything else, say ``KeyboardInterrupt``, the flusher gets that and the
    other callers ``interrupted(exc)``: an exception that tells them their items' fate is unknown).
    """

    def __init__(
        self,
        flush: Callable[[List[Sequence[T]]], Awaitable[List[R]]],
        interrupted: Callable[[BaseException], Exception],
    ) -> None:
        self._flush = flush
        self._interrupted = interrupted
        self._queued_items: List[Sequence[T]] = []  # per queued caller, in arrival order
        self._queued: List[Wakeup] = []  # and its wakeup, at the same index
        self._flushing = False

    @property
    def busy(self) -> bool:
        """A flush is running or handed on."""
        return self._flushing

    async def submit(self, items: Sequence[T]) -> List[R]:
        """Have ``items`` flushed (with whatever else is queued); their results in order."""
        if not self._flushing:
            self._flushing = True
            return await self._lead(items)
        wakeup = new_wakeup()
        self._queued_items.append(items)
        self._queued.append(wakeup)
        try:
            outcome: Any = await wakeup
        except BaseException:  # cancelled: withdraw if still queued, pass on a flush handed to us
            self._withdraw(wakeup)
            if _led(wakeup):
                self._hand_off()
            raise
        if outcome is _LEAD:
            self._withdraw(wakeup)
            return await self._lead(items)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome  # type: ignore[no-any-return]

    def _withdraw(self, wakeup: Wakeup) -> None:
        for index, queued in enumerate(self._queued):
            if queued is wakeup:
                del self._queued[index], self._queued_items[index]
                return

    def _hand_off(self) -> None:
        for wakeup in self._queued:
            if not wakeup.done():  # asyncio: a waiter cancelled while queued has its future cancelled
                wakeup.set_result(_LEAD)
                return
        self._flushing = False

    async def _lead(self, own: Sequence[T]) -> List[R]:
        """Flush ``own`` items with everything queued; ``own``'s results (or the flush's error)."""
        try:
            waiters: List[Wakeup] = []
            batches: List[Sequence[T]] = [own]
            for wakeup, part in zip(self._queued, self._queued_items):
                if not wakeup.done():  # a waiter cancelled while queued sends nothing
                    waiters.append(wakeup)
                    batches.append(part)
            self._queued, self._queued_items = [], []
            if not waiters:  # nobody else to answer: a cancelled flusher only loses its own results
                return await self._flush(batches)
            with anyio.CancelScope(shield=True):
                results = await self._flush_for(batches, waiters)
        finally:
            self._hand_off()
        return results

    async def _flush_for(self, batches: List[Sequence[T]], waiters: List[Wakeup]) -> List[R]:
        try:
            results = await self._flush(batches)
        except BaseException as exc:  # every caller of the batch gets the error (never a hang)
            error = exc if isinstance(exc, Exception) else self._interrupted(exc)
            for wakeup in waiters:
                wake(wakeup, error)
            raise
        own = len(batches[0])
        offset = own
        for wakeup, part in zip(waiters, batches[1:]):
            end = offset + len(part)
            wake(wakeup, results[offset:end])
            offset = end
        return results[:own]
