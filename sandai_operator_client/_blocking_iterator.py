"""A blocking iterator over an async iterator that lives on the client's loop thread."""

from __future__ import annotations

import atexit
import weakref
from typing import Any, AsyncIterator, Iterator, List, Optional

from ._portal import LoopThread
from .types import BatchTaskResult

__all__ = ("BlockingIterator",)


class BlockingIterator(Iterator[BatchTaskResult]):
    """A blocking iterator over an async one that lives on the loop thread; ``close()`` it when leaving
    early (a ``for`` loop left by ``break`` or an exception leaves it to the garbage collector).

    Rule: closing never waits where the wait may not end. Collected by the garbage collector (from any
    thread, the loop thread included) it starts the clean-up on the loop without waiting; at interpreter
    shutdown the loop thread is frozen, so iterators still open are closed by an ``atexit`` hook, which
    runs while it still turns, and a close after that does nothing. Closing first cancels a step still
    running on the loop (its caller was interrupted before it could cancel it) and waits for it to end:
    an async generator cannot be closed while it runs.
    """

    def __init__(self, loop: LoopThread, results: AsyncIterator[BatchTaskResult]) -> None:
        self._loop: Optional[LoopThread] = loop
        self._results = results
        self._step: Any = None  # the running step's cancel scope and its end (loop thread only)
        self._step_over: Any = None
        _open_iterators.add(self)
        if not _exit_hook:
            _exit_hook.append(atexit.register(_close_open_iterators))

    def __iter__(self) -> BlockingIterator:
        return self

    def __next__(self) -> BatchTaskResult:
        loop = self._loop
        if loop is None:
            raise StopIteration
        try:
            return loop.run(self._next)
        except StopAsyncIteration:
            self._loop = None
            _open_iterators.discard(self)
            raise StopIteration from None

    def close(self) -> None:
        """End the iteration: unsubscribe and release what the iterator holds (waits at most 5 s)."""
        loop, self._loop = self._loop, None
        _open_iterators.discard(self)
        if loop is not None and loop.usable:
            try:
                loop.run(self._aclose, timeout=_CLOSE_TIMEOUT)
            except TimeoutError:
                pass

    def __del__(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and loop.usable:
            loop.submit(self._aclose)

    async def _next(self) -> BatchTaskResult:
        import anyio

        with anyio.CancelScope() as scope:
            self._step, self._step_over = scope, anyio.Event()
            try:
                return await self._results.__anext__()
            finally:
                self._step_over.set()
                self._step = None
        raise StopAsyncIteration  # cancelled by close(): its caller is gone

    async def _aclose(self) -> None:
        step, over = self._step, self._step_over
        if step is not None:
            step.cancel()
            await over.wait()
        await self._results.aclose()  # type: ignore[attr-defined]


_CLOSE_TIMEOUT = 5.0
_open_iterators: weakref.WeakSet[BlockingIterator] = weakref.WeakSet()
_exit_hook: List[Any] = []


def _close_open_iterators() -> None:
    for iterator in list(_open_iterators):
        iterator.close()
