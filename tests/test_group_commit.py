"""GroupCommit: coalescing, hand-over of the flush, withdrawal on cancellation, errors (no I/O: a recorded flush)."""

from __future__ import annotations

from typing import List

import anyio
import pytest

from sandai_operator_client._core.group_commit import GroupCommit

pytestmark = pytest.mark.anyio


class Recorder:
    """A flush that records its batches and can be held open until released."""

    def __init__(self) -> None:
        self.batches: List[List[int]] = []
        self.gate = anyio.Event()
        self.started = anyio.Event()
        self.fail = False

    async def flush(self, items: List[int]) -> List[int]:
        self.batches.append(list(items))
        self.started.set()
        await self.gate.wait()
        if self.fail:
            raise ValueError("flush failed")
        return [i * 10 for i in items]


async def test_callers_queued_during_a_flush_go_out_together() -> None:
    rec = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(rec.flush)
    results: dict = {}

    async def submit(i: int) -> None:
        results[i] = await commit.submit([i, i + 100])

    async with anyio.create_task_group() as tg:
        tg.start_soon(submit, 0)
        await rec.started.wait()
        for i in range(1, 50):
            tg.start_soon(submit, i)
            await anyio.sleep(0)  # queue them in this order (trio does not start tasks in order)
        await anyio.sleep(0.05)
        rec.gate.set()
    assert rec.batches[0] == [0, 100]
    assert rec.batches[1] == [x for i in range(1, 50) for x in (i, i + 100)]  # one flush for all queued
    assert len(rec.batches) == 2
    assert results == {i: [i * 10, (i + 100) * 10] for i in range(50)}
    assert not commit.busy


async def test_cancelled_queued_callers_are_withdrawn_and_the_flush_is_handed_on() -> None:
    rec = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(rec.flush)
    results: dict = {}

    async def submit(i: int) -> None:
        results[i] = await commit.submit([i])

    async with anyio.create_task_group() as tg:
        tg.start_soon(submit, 0)
        await rec.started.wait()
        scopes = []
        for i in range(1, 6):  # 1 is the oldest queued caller (the one the flush is handed to)
            scope = anyio.CancelScope()
            scopes.append(scope)

            async def cancellable(i: int = i, scope: anyio.CancelScope = scope) -> None:
                with scope:
                    await submit(i)

            tg.start_soon(cancellable)
            await anyio.sleep(0.01)  # queue them in this order (trio does not start tasks in order)
        await anyio.sleep(0.05)
        scopes[0].cancel()  # the head goes: the next one must still be handed the flush
        scopes[2].cancel()
        await anyio.sleep(0.05)
        rec.gate.set()
    assert rec.batches == [[0], [2, 4, 5]]
    assert results == {0: [0], 2: [20], 4: [40], 5: [50]}
    assert not commit.busy


async def test_a_failed_flush_raises_in_every_caller_of_its_batch_only() -> None:
    rec = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(rec.flush)
    outcomes: dict = {}

    async def submit(i: int) -> None:
        try:
            outcomes[i] = await commit.submit([i])
        except ValueError as exc:
            outcomes[i] = str(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(submit, 0)
        await rec.started.wait()
        tg.start_soon(submit, 1)
        tg.start_soon(submit, 2)
        await anyio.sleep(0.05)
        rec.fail = True
        rec.gate.set()
    assert outcomes == {0: "flush failed", 1: "flush failed", 2: "flush failed"}
    rec.fail = False
    assert await commit.submit([7]) == [70]


async def test_a_started_flush_completes_when_its_callers_are_cancelled() -> None:
    rec = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(rec.flush)

    async def release_later() -> None:
        await anyio.sleep(0.2)
        rec.gate.set()

    async with anyio.create_task_group() as outer:
        outer.start_soon(release_later)
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(commit.submit, [1])
                await rec.started.wait()
                tg.start_soon(commit.submit, [2])  # queued behind the running flush
                await anyio.sleep(0.05)
                scope.cancel()  # the running flush is shielded and completes; the queued caller withdraws
    assert rec.batches == [[1]]
    assert not commit.busy
