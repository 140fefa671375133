"""A call: one task published and its result awaited, the way ``sync()``, ``desc()`` and the health
probe use it; and ``get()`` of a task published earlier. Functions of an :class:`~.core.OperatorCore` (its
methods ``call``, ``sync``, ``get_result``).

A call takes one of two paths to the queue, chosen when it starts: its LPUSH rides in the SUBSCRIBE's
write on the hub's RESP3 connection (broker = result backend's database), or it goes through the group
commit of the publisher once the SUBSCRIBE is written. Either way it reports exactly what happened: not
published (``OperatorConnectionError``), maybe published (``PublishOutcomeUnknownError``), published but
no result can come (``ResultUnavailableError``), not answered in time (``TaskTimeoutError``, saying where
the task is).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Optional

import anyio

from .._io.errors import ConnectionLost
from .._io.loop import current_time
from .._log import logger
from ..config import check_timeout
from ..errors import TaskTimeoutError
from ..types import LegacyTaskResult
from .batches import legacy_result
from .broker import LPush, PreparedTask
from .hub import Watch
from .tracing import start_call_span, use_call_span

if TYPE_CHECKING:
    from .core import OperatorCore

__all__ = ("call", "get_result", "sync")


async def get_result(core: OperatorCore, task_id: str, timeout: Optional[float] = None) -> Any:
    """Wait for a published task's raw operator envelope (what Celery's ``AsyncResult.get`` returns).

    ``timeout`` None waits without limit. FAILURE/REVOKED records raise ``TaskExecutionError``.
    """
    core.check_open()
    span = start_call_span("get", core.config.operator_name, core.config.operator_version)
    if span is not None:
        span.set_attribute("messaging.message.id", task_id)
        with use_call_span(span):
            return await _get_result(core, task_id, timeout)
    return await _get_result(core, task_id, timeout)


async def _get_result(core: OperatorCore, task_id: str, timeout: Optional[float]) -> Any:
    limit = float("inf") if timeout is None else check_timeout(timeout, allow_zero=True)
    deadline = core.deadline_after(limit)
    try:
        async with core.hub.watch([task_id], fetch_existing=True, deadline=deadline) as watch:
            await core.hub.wait(watch, deadline=deadline)
    except ConnectionLost as exc:
        if current_time() >= deadline:  # the budget ran out while the connection was being remade
            raise TaskTimeoutError(task_id, limit) from None
        raise core.failures.connection(exc) from None
    return _outcome_envelope(core, task_id, watch, limit)


async def call(
    core: OperatorCore,
    task: PreparedTask,
    timeout: float,
    published: Optional[List[str]] = None,
    finish: Optional[Callable[[str, Any], Any]] = None,
) -> Any:
    """Publish and wait: subscribe (confirmed, so no GET is needed), publish, wait for the PUBLISH.

    On a RESP3 hub connection to the broker's own database, the LPUSH rides in the SUBSCRIBE's
    write: the server orders them, so no confirmation has to be awaited first.

    Reports exactly what happened to the task: not published (``OperatorConnectionError``), maybe
    published (``PublishOutcomeUnknownError``), published but no result can come
    (``ResultUnavailableError``), or published and not answered in time (``TaskTimeoutError``).
    ``published`` (when given) receives the task id once the task is on the queue. Returns the
    operator's envelope, or what ``finish(task_id, envelope)`` makes of it (so that :func:`sync`
    needs no coroutine of its own around this one).
    """
    core.check_open()
    deadline = core.deadline_after(timeout)
    sent = False  # the task is (or may be) on the queue
    try:
        carried = await core.publishing.carried_lpushes([task], deadline)
        # Rule: a pending call is this one coroutine and its watch (entered by hand: ``async with``
        # would keep a bound ``__aexit__`` too; tests/faults/test_budgets.py counts the objects).
        watch = await core.hub.watch(
            [task.task_id], fetch_existing=False, await_replies=False, commands=carried, deadline=deadline
        ).__aenter__()
        try:
            if carried is None:
                await core.publish_one(task)
            else:  # the LPUSH rode with the SUBSCRIBE: its reply says whether the task is queued
                await _carried_publish(core, task, carried, watch, deadline)
            sent = True
            if published is not None:
                published.append(task.task_id)
            await core.hub.wait(watch, deadline=deadline)
        finally:
            await _leave_call(core, task, watch, sent)
    except ConnectionLost as exc:
        raise (core.failures.unavailable(task.task_id, exc) if sent else core.failures.connection(exc)) from None
    if task.task_id not in watch.outcomes:
        raise await _timed_out(core, task, timeout)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("task %s answered", task.task_id)
    envelope = _outcome_envelope(core, task.task_id, watch, timeout)
    return envelope if finish is None else finish(task.task_id, envelope)


async def _leave_call(core: OperatorCore, task: PreparedTask, watch: Watch, sent: bool) -> None:
    """Leave a call's watch; a sent task's result key is deleted with the UNSUBSCRIBE (inside the watch)."""
    try:
        if sent:
            await core.forget_later([task.task_id])
    finally:
        await watch.__aexit__(None, None, None)


async def _timed_out(core: OperatorCore, task: PreparedTask, timeout: float) -> TaskTimeoutError:
    """The timeout of a task this client published, saying where the task is: one pipelined look on a
    Redis broker, given at most a second (or the I/O timeout) past the caller's deadline."""
    place: Optional[str] = None
    waiting: Optional[int] = None
    with anyio.move_on_after(min(1.0, core.config.connection.io_timeout)):
        try:
            place, waiting = await core.publisher.whereabouts(
                task, core.config.broker_url == core.config.result_backend
            )
        except ConnectionLost:
            pass
    return TaskTimeoutError(task.task_id, timeout, place, task.queue, waiting)


async def _carried_publish(
    core: OperatorCore, task: PreparedTask, carried: List[LPush], watch: Watch, deadline: float
) -> None:
    """Wait for the reply to the LPUSH ``watch`` carried; raises when the task is not on the queue (no
    reply in time leaves its fate open: the task may be queued, and the wait for it times out)."""
    # the LPUSH's reply precedes the task's result on the connection: one wait for both
    await core.hub.wait(watch, or_failed_command=True, deadline=deadline)
    if not watch.replies and watch.outcomes:  # a refused subscription: the LPUSH's reply follows it
        await core.hub.wait_replies(watch, deadline)
    if not watch.replies:
        return
    (error,) = await core.publishing.carried([task], carried, watch.replies)
    if error is not None:
        raise error


def sync(
    core: OperatorCore, input_artifacts: Any, options: Any, *, timeout: Optional[float] = None, **controls: Any
) -> Awaitable[LegacyTaskResult]:
    """Await it: submit and wait, ``(artifacts, results)``; typed errors otherwise. Invalid input
    raises at the call, before anything is sent.

    Rule: a plain function returning :func:`call`'s coroutine, so a pending ``sync()`` is one coroutine
    (tests/faults/test_budgets.py counts the objects of a pending call).
    """
    span = start_call_span("sync", core.config.operator_name, core.config.operator_version)
    if span is not None:
        return _traced_sync(core, span, input_artifacts, options, timeout, controls)
    task = core.prepare(input_artifacts, options, timeout=timeout, **controls)
    wait = timeout if timeout is not None else core.config.timeout
    return call(core, task, wait, finish=legacy_result)


async def _traced_sync(
    core: OperatorCore,
    span: Any,
    input_artifacts: Any,
    options: Any,
    timeout: Optional[float],
    controls: Dict[str, Any],
) -> LegacyTaskResult:
    """:meth:`sync` inside its CLIENT span (made current, so the task's PRODUCER span is its child)."""
    with use_call_span(span):
        task = core.prepare(input_artifacts, options, timeout=timeout, **controls)
        span.set_attribute("messaging.destination.name", task.queue)
        span.set_attribute("messaging.message.id", task.task_id)
        wait = timeout if timeout is not None else core.config.timeout
        return await call(core, task, wait, finish=legacy_result)  # type: ignore[no-any-return]


def _outcome_envelope(core: OperatorCore, task_id: str, watch: Watch, timeout: float) -> Any:
    outcome = watch.outcomes.get(task_id)
    if outcome is None:
        raise TaskTimeoutError(task_id, timeout)
    return core.envelope(task_id, outcome)
