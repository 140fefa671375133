"""What anyio asks the running event loop for, asked without finding out which library runs it each time.

``anyio.current_time()`` and ``anyio.Event()`` first ask sniffio which async library is running, which
on asyncio costs a lookup of the current task: a few percent of the CPU of 2,000 concurrent calls,
which make one of each per call. asyncio's own running-loop accessor answers the question in C. Under
trio (or with no asyncio loop running in this thread) they are anyio's own.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional

import anyio

__all__ = ("current_time", "new_event")

_asyncio_event: Optional[Callable[[], anyio.Event]] = None


def _get_running_loop() -> Any:
    # No asyncio loop can run where asyncio was never imported (and importing it here would cost trio
    # users its megabytes).
    asyncio = sys.modules.get("asyncio")
    return None if asyncio is None else asyncio._get_running_loop()


def current_time() -> float:
    """``anyio.current_time()``: the running event loop's clock."""
    loop = _get_running_loop()
    return loop.time() if loop is not None else anyio.current_time()


def new_event() -> anyio.Event:
    """``anyio.Event()`` for the running event loop."""
    global _asyncio_event
    if _get_running_loop() is None:
        return anyio.Event()
    if _asyncio_event is None:
        event = anyio.Event()
        backend_class = type(event)
        try:  # anyio's asyncio event class builds itself without asking sniffio; if not, keep anyio's way
            _asyncio_event = backend_class if type(backend_class()) is backend_class else anyio.Event
        except TypeError:
            _asyncio_event = anyio.Event
        return event
    return _asyncio_event()
