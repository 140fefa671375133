"""The blocking client under gevent's monkey-patching (Celery's gevent pool, gunicorn's gevent workers).

There ``threading`` makes greenlets, not threads, and every blocking primitive waits in the calling
thread's gevent hub. The client's loop therefore runs in a real OS thread (started with the functions
gevent saved before patching), on a selector gevent did not patch; a greenlet waits for its call in its
own hub, woken from the loop thread through an async watcher of that hub, the one way into a hub from
another thread that gevent supports (its locks and conditions lose cross-thread wake-ups: 2 of 1,000
calls hung that way).

Rules: nothing here runs unless gevent has patched ``threading``; the loop thread never waits on a
gevent primitive of another thread's hub, and a greenlet never waits on anything but its own hub.
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, TypeVar

if TYPE_CHECKING:
    import asyncio

__all__ = ("gevent_monkey", "loop_options", "os_lock", "run_from_greenlet", "start_os_thread")

T = TypeVar("T")


def gevent_monkey() -> Any:
    """gevent's ``monkey`` module when it patched ``threading`` (its threads are then greenlets), else None."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey if monkey is not None and monkey.is_module_patched("threading") else None


def start_os_thread(target: Callable[[], None], name: str) -> None:
    """Start ``target`` in a new daemon OS thread (a real one under gevent too, nameless there)."""
    monkey = gevent_monkey()
    if monkey is None:
        threading.Thread(target=target, name=name, daemon=True).start()
    else:
        monkey.get_original("_thread", "start_new_thread")(target, ())


def os_lock() -> Any:
    """A lock that blocks the OS thread (not a greenlet), to hand-shake with a thread of ``start_os_thread``."""
    monkey = gevent_monkey()
    return threading.Lock() if monkey is None else monkey.get_original("_thread", "allocate_lock")()


def loop_options() -> dict[str, Any]:
    """anyio's asyncio options for the loop thread. Under gevent: a selector gevent did not patch (its own
    would wait in a hub this thread never runs) and blocking helpers (name resolution) run in place rather
    than in executor threads, which gevent would make greenlets of this same thread."""
    monkey = gevent_monkey()
    if monkey is None:
        return {}

    def loop_factory() -> asyncio.AbstractEventLoop:
        import asyncio

        loop = asyncio.SelectorEventLoop(monkey.get_original("selectors", "DefaultSelector")())
        loop.set_default_executor(_InPlaceExecutor())
        return loop

    return {"loop_factory": loop_factory}


class _InPlaceExecutor(concurrent.futures.ThreadPoolExecutor):
    """Runs each function at once in the submitting thread, never starting a thread (under gevent, the
    loop thread's own hub serves whatever gevent-patched blocking call it makes). asyncio accepts only a
    ``ThreadPoolExecutor`` as its default executor."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def run_from_greenlet(
    loop: asyncio.AbstractEventLoop, func: Callable[..., Awaitable[T]], *args: Any, timeout: Optional[float] = None
) -> T:
    """Run ``await func(*args)`` as a task of ``loop`` (in the loop thread) while the calling greenlet
    waits in its hub; killing the greenlet (or ``timeout``, then ``TimeoutError``) cancels the task."""
    import gevent
    from gevent.event import Event

    finished = Event()
    # An async watcher is the hub's thread-safe doorbell; while started it also keeps the hub from
    # deciding that a lone waiting greenlet "would block forever" (its thread-safe callback queue does not).
    doorbell = gevent.get_hub().loop.async_()
    doorbell.start(finished.set)
    started: list[asyncio.Task[T]] = []
    ringing = os_lock()  # the loop thread rings only while the greenlet has not closed the doorbell
    doorbell_closed = False

    def ring(_: object) -> None:
        with ringing:
            if not doorbell_closed:
                doorbell.send()

    async def call() -> T:
        return await func(*args)

    def start() -> None:
        task = loop.create_task(call())
        started.append(task)
        task.add_done_callback(ring)

    def cancel() -> None:  # queued after ``start``: the loop runs callbacks in order
        started[0].cancel()

    loop.call_soon_threadsafe(start)
    try:
        finished.wait(timeout)  # a gevent.Timeout of the caller's own, or a kill, raises here
        if not finished.is_set():
            raise TimeoutError
    except BaseException:
        loop.call_soon_threadsafe(cancel)
        raise
    finally:
        with ringing:
            doorbell_closed = True
            doorbell.close()
    return started[0].result()
