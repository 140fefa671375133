"""What anyio asks the running event loop for, asked without finding out which library runs it each time.

``anyio.current_time()`` and ``anyio.Event()`` first ask sniffio which async library is running, which
on asyncio costs a lookup of the current task: a few percent of the CPU of 2,000 concurrent calls,
which make one of each per call. asyncio's own running-loop accessor answers the question in C. Under
trio (or with no asyncio loop running in this thread) anyio's own are used.

``new_wakeup()`` is an event for *one* waiter. On asyncio it is a bare future: an anyio event waits
through two coroutines on an asyncio event with its own queue of futures, six objects per wait instead
of two, for 2,000 concurrent calls that each wait once. (A future must not be shared: cancelling one
waiter cancels the future it awaits. Events that many callers wait on stay anyio events.)
"""

from __future__ import annotations

import sys
from typing import Any, Awaitable, Union

import anyio

__all__ = ("Wakeup", "current_time", "new_wakeup")


def _get_running_loop() -> Any:
    # No asyncio loop can run where asyncio was never imported (and importing it here would cost trio
    # users its megabytes).
    asyncio = sys.modules.get("asyncio")
    return None if asyncio is None else asyncio._get_running_loop()


def current_time() -> float:
    """``anyio.current_time()``: the running event loop's clock."""
    loop = _get_running_loop()
    return loop.time() if loop is not None else anyio.current_time()


class _FutureWakeup:
    """``anyio.Event``'s ``set``/``is_set``/``wait`` on an asyncio future, for a single waiter."""

    __slots__ = ("_future",)

    def __init__(self, future: Any) -> None:
        self._future = future

    def set(self) -> None:
        if not self._future.done():  # a cancelled waiter cancelled it: nothing to wake
            self._future.set_result(None)

    def is_set(self) -> bool:
        return self._future.done()  # type: ignore[no-any-return]

    def wait(self) -> Awaitable[None]:
        return self._future  # type: ignore[no-any-return]


Wakeup = Union[anyio.Event, _FutureWakeup]
"""What :func:`new_wakeup` returns: ``set()``, ``is_set()``, and ``wait()`` to await."""


def new_wakeup() -> Wakeup:
    """An event that exactly one task waits on (at most once), for the running event loop."""
    loop = _get_running_loop()
    return anyio.Event() if loop is None else _FutureWakeup(loop.create_future())
