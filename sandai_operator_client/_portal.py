"""How blocking clients drive the async core: inline in the calling thread, else through a loop thread.

``InlineLoop`` (below) runs the core on a private loop in the calling thread whenever that thread is the
only one inside the client; concurrent calls from other threads go through ``LoopThread``.

One long-lived daemon thread per process runs an anyio ``BlockingPortal`` (asyncio backend); each sync
call is one hop into it. A caller interrupted while waiting (Ctrl-C) cancels its task in the loop instead
of leaving it running. After ``os.fork()`` the child abandons the inherited portal (its thread does not
exist in the child) and starts its own on first use. Calling a sync client from the loop thread itself
would deadlock, so it raises instead.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, TypeVar

import anyio

from ._greenlets import gevent_monkey, loop_options, os_lock, run_from_greenlet, start_os_thread
from ._io.loop import event_loop_running

if TYPE_CHECKING:
    import asyncio

    from anyio.from_thread import BlockingPortal

__all__ = ("InlineLoop", "LoopThread", "loop_thread")

T = TypeVar("T")


class LoopThread:
    """A daemon thread running an event loop with a portal into it."""

    def __init__(self) -> None:
        self._portal: Optional[BlockingPortal] = None
        self._asyncio_loop: Optional[asyncio.AbstractEventLoop] = None
        self._error: Optional[BaseException] = None
        self._ident: Optional[int] = None
        self.pid = os.getpid()
        self._greenlets = gevent_monkey() is not None
        # A real OS thread even where gevent patched ``threading`` (its threads would be greenlets of the
        # caller's thread, and a loop there would block them all); a lock that gevent did not patch
        # signals readiness, so nothing here needs the caller's hub.
        self._ready = os_lock()
        self._ready.acquire()
        start_os_thread(self._run, "sandai-operator-client-loop")
        self._ready.acquire()
        if self._error is not None:
            raise RuntimeError("could not start the client's event loop thread") from self._error

    def _run(self) -> None:
        from anyio.from_thread import BlockingPortal  # only blocking clients used concurrently need it

        self._ident = threading.get_ident()

        async def serve() -> None:
            import asyncio

            self._asyncio_loop = asyncio.get_running_loop()
            async with BlockingPortal() as portal:
                self._portal = portal
                self._ready.release()
                await portal.sleep_until_stopped()

        try:
            anyio.run(serve, backend="asyncio", backend_options=loop_options())
        except BaseException as exc:
            self._error = exc
            self._ready.release()

    def _checked_portal(self) -> BlockingPortal:
        if threading.get_ident() == self._ident:
            raise RuntimeError(
                "a sync OperatorClient was called from its own event loop thread; use AsyncOperatorClient in async code"
            )
        assert self._portal is not None
        return self._portal

    def run(self, func: Callable[..., Awaitable[T]], *args: Any, timeout: Optional[float] = None) -> T:
        """Run ``await func(*args)`` in the loop; an interrupt of the caller cancels it there, and so
        does ``timeout`` (then ``TimeoutError``)."""
        portal = self._checked_portal()
        if self._greenlets:
            assert self._asyncio_loop is not None
            return run_from_greenlet(self._asyncio_loop, func, *args, timeout=timeout)
        future = portal.start_task_soon(func, *args)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    @property
    def usable(self) -> bool:
        """Whether waiting on the loop can end: its thread runs and the interpreter is not shutting down
        (then daemon threads are frozen, and a wait on one never ends)."""
        return self._asyncio_loop is not None and not self._asyncio_loop.is_closed() and not sys.is_finalizing()

    def submit(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Start ``await func(*args)`` in the loop without waiting for it (from any thread, the loop's too:
        the portal refuses that one)."""
        assert self._asyncio_loop is not None
        _start_on(self._asyncio_loop, func, *args)

    def run_sync(self, func: Callable[..., T], *args: Any) -> T:
        """Run a plain function in the loop thread (to build loop-bound objects there)."""
        portal = self._checked_portal()
        if self._greenlets:
            assert self._asyncio_loop is not None

            async def call() -> T:
                return func(*args)

            return run_from_greenlet(self._asyncio_loop, call)
        return portal.call(func, *args)


_lock = threading.Lock()
_current: Optional[LoopThread] = None


def loop_thread() -> LoopThread:
    """The process's loop thread, started on first use (and anew in a forked child)."""
    global _current
    current = _current
    if current is None or current.pid != os.getpid():
        with _lock:
            if _current is None or _current.pid != os.getpid():
                _current = LoopThread()
            current = _current
    return current


def _abandon_after_fork() -> None:
    # The parent's loop thread does not exist in the child: never use (or exit) its portal here.
    global _current, _lock
    _current = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_abandon_after_fork)


class InlineLoop:
    """A private asyncio loop that a blocking client runs in the *calling* thread, one thread at a time.

    A call that finds the loop free (and no event loop already running in its thread) drives the core
    right here: no thread hop, which is most of a blocking call's overhead. A call that finds it busy
    (another thread is in a call) returns ``False`` so the caller falls back to the shared loop thread.
    The core never relies on background tasks, so a loop that only runs during calls serves it fully.
    An interrupt (Ctrl-C) cancels the call's task and lets its clean-up run before re-raising.
    """

    def __init__(self) -> None:
        # Rule: the loop is made by the first call; a client created at import time (or never used) does
        # not import asyncio (the first-call module budget in tests/faults/test_budgets.py).
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        # Re-entrant: a KeyboardInterrupt landing between taking it and the ``try`` that releases it
        # leaves it taken; the same thread must still get in (it cannot be inside a call: a call made
        # from a coroutine on this loop finds the loop running and goes to the loop thread).
        self._lock = threading.RLock()
        self.pid = os.getpid()
        # Under gevent every caller is a greenlet of one thread: a loop driven in one of them would stop
        # the others (and their hub) for the whole call, so every call goes to the loop thread.
        self._greenlets = gevent_monkey() is not None

    def try_run(self, func: Callable[..., Awaitable[T]], *args: Any) -> tuple[bool, Optional[T]]:
        """``(True, result)`` when run here, ``(False, None)`` when the caller must use the loop thread."""
        # Not inside a running event loop (asyncio's, trio's): a loop of ours run in its thread would
        # take it over (trio's scheduler was corrupted that way); the caller goes to the loop thread.
        if self._greenlets or event_loop_running() or not self._lock.acquire(blocking=False):
            return False, None
        try:
            return True, self._drive(func, *args)
        finally:
            self._lock.release()

    def run(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run here, waiting for another thread's call to finish first (used for closing)."""
        with self._lock:
            return self._drive(func, *args)

    def start_beside(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Start ``await func(*args)`` on this loop, beside the call another thread is driving on it now
        (thread-safe; with no call in progress it runs with the next one)."""
        if self._loop is not None and not self._loop.is_closed():
            _start_on(self._loop, func, *args)

    def _drive(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        async def call() -> T:
            return await func(*args)

        loop = self._loop
        if loop is None:
            import asyncio

            loop = self._loop = asyncio.new_event_loop()
        in_main_thread = threading.get_ident() == _MAIN_THREAD_ID
        if in_main_thread:
            _sigint_cancels_main_call()
        task = loop.create_task(call())
        if in_main_thread:
            _main_call.task, _main_call.interrupted = task, False
        try:
            try:
                _run_until_done(loop, task)
            except BaseException:  # KeyboardInterrupt from a handler of the program's own, say
                _finish_cancelled(loop, task)
                raise
        finally:
            if in_main_thread:
                _main_call.task = None
        if in_main_thread and _main_call.interrupted:
            raise KeyboardInterrupt  # the call was cancelled (or had just finished) when Ctrl-C came
        return task.result()

    def close(self) -> None:
        """Close the loop (after the core on it was closed)."""
        with self._lock:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.close()


def _start_on(loop: asyncio.AbstractEventLoop, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """Start ``await func(*args)`` as a task of ``loop`` from any thread, without waiting for it."""
    loop.call_soon_threadsafe(lambda: loop.create_task(func(*args)))  # type: ignore[arg-type]


def _run_until_done(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    """Run ``loop`` until ``task`` is done. Not ``run_until_complete``: after an interrupt its stop
    callback can be left queued, stop the next run early and make it raise ``RuntimeError`` ("Event loop
    stopped before Future completed"); a stray stop here only means one more turn of the ``while``."""

    def stop(_: object) -> None:
        loop.stop()

    task.add_done_callback(stop)
    try:
        while not task.done():
            loop.run_forever()
    finally:
        task.remove_done_callback(stop)


def _finish_cancelled(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and let its clean-up run to the end (every layer drops a connection it was
    interrupted on; a task left pending would hold it), whatever interrupts the clean-up meanwhile."""
    while not task.done():
        task.cancel()
        try:
            _run_until_done(loop, task)
        except BaseException:
            pass


_MAIN_THREAD_ID = threading.main_thread().ident


class _MainCall:
    """The inline call running in the main thread, if any, and whether SIGINT cancelled it."""

    __slots__ = ("interrupted", "task")

    def __init__(self) -> None:
        self.task: Optional[asyncio.Task[Any]] = None
        self.interrupted = False


_main_call = _MainCall()


def _on_sigint(signum: int, frame: Any) -> None:
    """SIGINT while a blocking call runs inline in the main thread cancels that call: the cancellation
    lands at an await, where every layer is cancel-safe, not at any bytecode as KeyboardInterrupt would;
    the call then raises KeyboardInterrupt. At any other time: Python's default, KeyboardInterrupt."""
    task = _main_call.task
    if task is None or task.done():
        raise KeyboardInterrupt
    _main_call.interrupted = True
    task.cancel()
    task.get_loop().call_soon_threadsafe(_noop)  # wake the selector: it may be waiting on a long timeout


def _noop() -> None:
    pass


def _sigint_cancels_main_call() -> None:
    """Install :func:`_on_sigint` in place of Python's default SIGINT handler, at the first call made in
    the main thread (a program's own handler is left alone, then and later). Installed for good and
    looked at once: swapping handlers per call costs more than the rest of the call's loop overhead."""
    global _sigint_checked
    if not _sigint_checked:
        _sigint_checked = True
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _on_sigint)


_sigint_checked = False
