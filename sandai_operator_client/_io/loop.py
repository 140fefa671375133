"""What anyio asks the running event loop for, asked without finding out which library runs it each time.

``anyio.current_time()`` and ``anyio.Event()`` first ask sniffio which async library is running, which
on asyncio looks up the current task, once per call of ours. asyncio's own running-loop accessor answers
the question in C. Under trio (or with no asyncio loop running in this thread) anyio's own are used.

``new_wakeup()`` is a one-shot future for *one* waiter, which may carry a value. Rule: a waiter holds
one object to wait on (on asyncio a bare future; an anyio event would add its own coroutines and queue:
tests/faults/test_budgets.py counts a pending call's objects). A future must not be shared: cancelling
one waiter cancels the future it awaits. Events that many callers wait on stay anyio events. Under trio
it is an anyio event with a value.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import Any, Deque, Generator, Optional, Protocol

import anyio

__all__ = ("Mutex", "Wakeup", "current_time", "event_loop_running", "new_wakeup", "running_asyncio_loop", "wake")


def running_asyncio_loop() -> Any:
    """The asyncio loop running in this thread, or None (under trio, or outside any loop)."""
    # No asyncio loop can run where asyncio was never imported (and importing it here would cost trio
    # users, and blocking clients that have not called yet, its megabytes).
    asyncio = sys.modules.get("asyncio")
    return None if asyncio is None else asyncio._get_running_loop()


def event_loop_running() -> bool:
    """Whether an event loop of any async library (asyncio, trio...) runs in this thread."""
    if running_asyncio_loop() is not None:
        return True
    sniffio = sys.modules.get("sniffio")  # trio names itself there while it runs a thread's tasks
    return sniffio is not None and sniffio.thread_local.name is not None


def current_time() -> float:
    """``anyio.current_time()``: the running event loop's clock."""
    loop = running_asyncio_loop()
    return loop.time() if loop is not None else anyio.current_time()


class Wakeup(Protocol):
    """What :func:`new_wakeup` returns: the part of ``asyncio.Future`` that one waiter and its waker use."""

    def done(self) -> bool: ...

    def cancelled(self) -> bool: ...

    def set_result(self, value: Any) -> None: ...

    def result(self) -> Any: ...

    def __await__(self) -> Generator[Any, None, Any]: ...


class _EventFuture:
    """:class:`Wakeup` on an anyio event (trio). A waiter cancelled under trio leaves it pending."""

    __slots__ = ("_event", "_value")

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._value: Any = None

    def done(self) -> bool:
        return self._event.is_set()

    def cancelled(self) -> bool:
        return False

    def set_result(self, value: Any) -> None:
        self._value = value
        self._event.set()

    def result(self) -> Any:
        return self._value

    def __await__(self) -> Generator[Any, None, Any]:
        yield from self._event.wait().__await__()
        return self._value


def new_wakeup() -> Wakeup:
    """A one-shot future that exactly one task awaits, for the running event loop; see :func:`wake`."""
    loop = running_asyncio_loop()
    return _EventFuture() if loop is None else loop.create_future()


def wake(wakeup: Wakeup, value: Any = None) -> None:
    """Set ``wakeup``'s result unless it is done already (its waiter was cancelled, or it was woken)."""
    if not wakeup.done():
        wakeup.set_result(value)


_HANDED = object()  # a Mutex waiter's wakeup value: the lock was handed to it


class Mutex:
    """``async with`` mutual exclusion that any exception leaves consistent.

    anyio's ``Lock`` undoes a half-done acquisition only for a cancellation: another exception thrown
    at its awaits (a KeyboardInterrupt) leaves it held by a task that never entered the block, and every
    later ``acquire`` fails or waits for ever. Here a waiter that leaves for any reason withdraws, or
    passes the lock on if it had been handed it. Taking a free lock does not yield.
    """

    __slots__ = ("_held", "_waiters")

    def __init__(self) -> None:
        self._held = False
        self._waiters: Deque[Wakeup] = deque()

    async def __aenter__(self) -> None:
        if not self._held:
            self._held = True
            return
        wakeup = new_wakeup()
        self._waiters.append(wakeup)
        try:
            await wakeup
        except BaseException:
            if wakeup.done() and not wakeup.cancelled() and wakeup.result() is _HANDED:
                self._release()  # handed the lock as we left: pass it on
            else:
                try:
                    self._waiters.remove(wakeup)
                except ValueError:
                    pass
            raise

    async def __aexit__(self, *exc_info: object) -> Optional[bool]:
        self._release()
        return None

    def _release(self) -> None:
        while self._waiters:
            wakeup = self._waiters.popleft()
            if not wakeup.done():  # asyncio: a waiter cancelled while queued has its future cancelled
                wakeup.set_result(_HANDED)  # the lock stays held: by that waiter now
                return
        self._held = False
