"""Cancelled or timed-out waiters leave no subscription, waiter or task behind."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, List

import anyio
import pytest
import redis

from sandai_operator_client import AsyncOperatorClient, OperatorClient, TaskTimeoutError
from sandai_operator_client.testing import Crash, FakeOperator

pytestmark = pytest.mark.anyio


def _subscribed(redis_admin: redis.Redis, task_ids: List[str]) -> int:
    channels = [f"celery-task-meta-{t}" for t in task_ids]
    return sum(n for _, n in redis_admin.pubsub_numsub(*channels)) if channels else 0


def _eventually(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


async def test_cancel_scope_leaves_nothing(
    async_operator_client: AsyncOperatorClient, fake_operator: FakeOperator, redis_admin: redis.Redis
) -> None:
    fake_operator.behaviour = lambda payload: Crash()
    stats = async_operator_client.statistics
    with anyio.move_on_after(0.3):
        await async_operator_client.sync([], {})
    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(async_operator_client.sync, [], {})
        await anyio.sleep(0.3)
        tg.cancel_scope.cancel()
    with pytest.raises(TaskTimeoutError):
        await async_operator_client.sync([], {}, timeout=0.2)
    handle = await async_operator_client.async_call([], {})
    with anyio.move_on_after(0.2):
        await handle.get()
    assert stats().watched_channels == 0 and stats().waiting_calls == 0
    ids = [p["_task_id"] for p in fake_operator.received]
    assert len(ids) >= 52
    with anyio.fail_after(5):
        while _subscribed(redis_admin, ids):
            await anyio.sleep(0.02)


async def test_cancelled_waiter_does_not_disturb_others(
    async_operator_client: AsyncOperatorClient, fake_operator: FakeOperator
) -> None:
    # the reader role moves between waiters: cancelling whoever reads must hand it on
    results: List[Any] = []

    async def patient(i: int) -> None:
        results.append(await async_operator_client.sync([], {"text": str(i), "sleep": 0.5}))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(patient, i)
        for _ in range(10):
            with anyio.move_on_after(0.05):
                await async_operator_client.sync([], {"sleep": 5})
    assert sorted(r[1]["echo"] for r in results) == sorted(str(i) for i in range(20))
    assert async_operator_client.statistics().watched_channels == 0


async def test_waiters_of_one_task_each_get_its_result_whoever_leaves_first(
    async_operator_client: AsyncOperatorClient, fake_operator: FakeOperator, redis_admin: redis.Redis
) -> None:
    # several watches of one channel: the first is kept apart from the others, and whichever leaves
    # (the first included, by cancellation) the rest still get the result; the last one unsubscribes
    handle = await async_operator_client.async_call([], {"text": "shared", "sleep": 0.4})
    stats = async_operator_client.statistics
    envelopes: List[Any] = []

    async def wait() -> None:
        envelopes.append(await handle.get(timeout=10))

    async def leave_early() -> None:
        with anyio.move_on_after(0.15):
            await handle.get(timeout=10)

    async with anyio.create_task_group() as tg:
        tg.start_soon(leave_early)  # the channel's first watch, leaving while the others wait
        await anyio.sleep(0.02)
        for _ in range(3):
            tg.start_soon(wait)
        await anyio.sleep(0.02)
        tg.start_soon(leave_early)  # and one of the others
        await anyio.sleep(0.02)
        assert stats().watched_channels == 1 and stats().waiting_calls == 5  # five watches, one channel
    assert len(envelopes) == 3 and all(e["results"]["echo"] == "shared" for e in envelopes)
    assert stats().watched_channels == 0 and stats().waiting_calls == 0
    assert _eventually(lambda: _subscribed(redis_admin, [handle.task_id]) == 0)


async def test_each_waiter_times_out_at_its_own_deadline(
    async_operator_client: AsyncOperatorClient, fake_operator: FakeOperator
) -> None:
    # Only the reader holds a cancel scope; a waiter parked behind it with an earlier deadline lowers
    # that scope's deadline, and the reader wakes it in time while it goes on reading for the others.
    fake_operator.behaviour = lambda payload: Crash()  # nothing ever answers
    stats = async_operator_client.statistics
    timed_out: List[float] = []

    async def short(timeout: float) -> None:
        with pytest.raises(TaskTimeoutError):
            await async_operator_client.sync([], {}, timeout=timeout)
        timed_out.append(timeout)

    async with anyio.create_task_group() as tg:
        tg.start_soon(async_operator_client.sync, [], {})  # the reader: the client's long timeout
        await anyio.sleep(0.1)
        with anyio.fail_after(10):  # far below the reader's own deadline
            async with anyio.create_task_group() as waiters:
                for timeout in (0.6, 0.2, 0.4, 0.2):
                    waiters.start_soon(short, timeout)
        assert stats().waiting_calls == 1  # every parked waiter left; the reader still reads
        # a waiter with time left is still served after the others timed out
        fake_operator.behaviour = lambda payload: __import__("sandai_operator_client.testing", fromlist=["Echo"]).Echo()
        assert (await async_operator_client.sync([], {"text": "late"}, timeout=10))[1]["echo"] == "late"
        tg.cancel_scope.cancel()
    assert sorted(timed_out) == [0.2, 0.2, 0.4, 0.6]
    assert stats().watched_channels == 0 and stats().waiting_calls == 0


def test_keyboard_interrupt_in_sync_client(
    operator_client: OperatorClient, fake_operator: FakeOperator, redis_admin: redis.Redis
) -> None:
    fake_operator.behaviour = lambda payload: Crash()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            operator_client.sync([], {})
    finally:
        timer.cancel()
    stats = operator_client.statistics
    assert _eventually(lambda: stats().watched_channels == 0 and stats().waiting_calls == 0)
    ids = [p["_task_id"] for p in fake_operator.received]
    assert _eventually(lambda: _subscribed(redis_admin, ids) == 0)
    # the client still works afterwards
    fake_operator.behaviour = lambda payload: __import__("sandai_operator_client.testing", fromlist=["Echo"]).Echo()
    assert operator_client.sync([], {"text": "after"})[1]["echo"] == "after"


def test_sync_client_from_the_loop_thread_raises(operator_client: OperatorClient) -> None:
    async def inside() -> None:
        operator_client.get_queue_info()  # no I/O: fine
        with pytest.raises(RuntimeError, match="own event loop thread"):
            operator_client.probe(timeout=1)

    loop, _ = operator_client._shared_loop()
    loop.run(inside)


def test_threads_share_a_client(operator_client: OperatorClient) -> None:
    # one thread drives the core inline, the others go through the loop thread: all get their results
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda i: operator_client.sync([], {"text": str(i), "sleep": 0.05})[1]["echo"], range(64))
        )
    assert results == [str(i) for i in range(64)]
    assert operator_client._loop_core is not None  # the shared loop was used


def test_fork_child_gets_its_own_loop(operator_client: OperatorClient) -> None:
    assert operator_client.sync([], {"text": "parent"})[1]["echo"] == "parent"
    pid = os.fork()
    if pid == 0:  # child: the inherited loop thread does not exist here
        code = 1
        try:
            code = 0 if operator_client.sync([], {"text": "child"}, timeout=10)[1]["echo"] == "child" else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert operator_client.sync([], {"text": "parent again"})[1]["echo"] == "parent again"
