"""GroupCommit: coalescing, hand-over of the flush, withdrawal on cancellation, errors (no I/O: a recorded flush)."""

from __future__ import annotations

from typing import Dict, List, Sequence, Union

import anyio
import pytest

from sandai_operator_client._core.group_commit import GroupCommit

pytestmark = pytest.mark.anyio


def flattened(batches: List[Sequence[int]]) -> List[int]:
    return [item for batch in batches for item in batch]


def _interrupted(exc: BaseException) -> Exception:
    return RuntimeError(f"the flush was interrupted: {exc!r}")


class Recorder:
    """A group commit whose flush records its batches and can be held open until released."""

    def __init__(self) -> None:
        self.batches: List[List[int]] = []  # the items of each flush
        self.served: List[List[Sequence[int]]] = []  # and the callers' sequences it was handed
        self.gate = anyio.Event()
        self.started = anyio.Event()
        self.fail = False
        self.commit: GroupCommit[int, int] = GroupCommit(self.flush, _interrupted)
        self.results: Dict[int, Union[List[int], str]] = {}  # per caller (its first item): results or error

    async def submit(self, *items: int) -> None:
        try:
            self.results[items[0]] = await self.commit.submit(list(items))
        except ValueError as exc:
            self.results[items[0]] = str(exc)

    async def flush(self, batches: List[Sequence[int]]) -> List[int]:
        self.served.append(batches)
        items = flattened(batches)
        self.batches.append(items)
        self.started.set()
        await self.gate.wait()
        if self.fail:
            raise ValueError("flush failed")
        return [i * 10 for i in items]


async def test_callers_queued_during_a_flush_go_out_together() -> None:
    rec = Recorder()
    async with anyio.create_task_group() as tg:
        tg.start_soon(rec.submit, 0, 100)
        await rec.started.wait()
        for i in range(1, 50):
            tg.start_soon(rec.submit, i, i + 100)
            await anyio.sleep(0)  # queue them in this order (trio does not start tasks in order)
        await anyio.sleep(0.05)
        rec.gate.set()
    assert rec.batches[0] == [0, 100]
    assert rec.batches[1] == [x for i in range(1, 50) for x in (i, i + 100)]  # one flush for all queued
    assert len(rec.batches) == 2
    assert rec.results == {i: [i * 10, (i + 100) * 10] for i in range(50)}
    assert not rec.commit.busy


async def test_cancelled_queued_callers_are_withdrawn_and_the_flush_is_handed_on() -> None:
    rec = Recorder()
    async with anyio.create_task_group() as tg:
        tg.start_soon(rec.submit, 0)
        await rec.started.wait()
        scopes = []
        for i in range(1, 6):  # 1 is the oldest queued caller (the one the flush is handed to)
            scope = anyio.CancelScope()
            scopes.append(scope)

            async def cancellable(i: int = i, scope: anyio.CancelScope = scope) -> None:
                with scope:
                    await rec.submit(i)

            tg.start_soon(cancellable)
            await anyio.sleep(0.01)  # queue them in this order (trio does not start tasks in order)
        await anyio.sleep(0.05)
        scopes[0].cancel()  # the head goes: the next one must still be handed the flush
        scopes[2].cancel()
        await anyio.sleep(0.05)
        rec.gate.set()
    assert rec.batches == [[0], [2, 4, 5]]
    assert rec.results == {0: [0], 2: [20], 4: [40], 5: [50]}
    assert not rec.commit.busy


async def test_the_flush_gets_each_callers_items_as_given() -> None:
    # a caller's lazy sequence (the Redis publisher's LPUSHes, encoded only as they are written) must
    # reach the flush as it is, not copied into one list of everything
    rec = Recorder()
    first, queued = (1, 2), range(100, 103)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rec.commit.submit, first)
        await rec.started.wait()
        tg.start_soon(rec.commit.submit, queued)
        await anyio.sleep(0.05)
        rec.gate.set()
    assert rec.served[1][0] is queued
    assert rec.batches == [[1, 2], [100, 101, 102]]


async def test_a_failed_flush_raises_in_every_caller_of_its_batch_only() -> None:
    rec = Recorder()
    async with anyio.create_task_group() as tg:
        tg.start_soon(rec.submit, 0)
        await rec.started.wait()
        tg.start_soon(rec.submit, 1)
        tg.start_soon(rec.submit, 2)
        await anyio.sleep(0.05)
        rec.fail = True
        rec.gate.set()
    assert rec.results == {0: "flush failed", 1: "flush failed", 2: "flush failed"}
    rec.fail = False
    assert await rec.commit.submit([7]) == [70]


async def test_a_flush_carrying_other_callers_items_completes_when_its_flusher_is_cancelled() -> None:
    batches: List[List[int]] = []
    first_gate, second_started, second_gate = anyio.Event(), anyio.Event(), anyio.Event()

    async def flush(served: List[Sequence[int]]) -> List[int]:
        items = flattened(served)
        batches.append(items)
        if len(batches) == 1:
            await first_gate.wait()
        else:
            second_started.set()
            await second_gate.wait()
        return [i * 10 for i in items]

    commit: GroupCommit[int, int] = GroupCommit(flush, _interrupted)
    results: dict = {}
    flusher_scope = anyio.CancelScope()

    async def submit(i: int) -> None:
        results[i] = await commit.submit([i])

    async def second_flusher() -> None:
        with flusher_scope:
            await submit(2)

    async with anyio.create_task_group() as tg:
        tg.start_soon(submit, 1)
        await anyio.sleep(0.01)
        tg.start_soon(second_flusher)  # queued first: the next flush is handed to it
        await anyio.sleep(0.01)
        tg.start_soon(submit, 3)
        await anyio.sleep(0.01)
        first_gate.set()
        await second_started.wait()
        flusher_scope.cancel()  # its flush carries 3's item: it runs on, shielded
        await anyio.sleep(0.05)
        assert 3 not in results
        second_gate.set()
    assert batches == [[1], [2, 3]]
    assert results == {1: [10], 2: [20], 3: [30]}  # the flush 2 led (cancelled) completed for 3, and for 2
    assert not commit.busy


async def test_a_flush_of_the_flushers_own_items_alone_is_cancellable() -> None:
    never = anyio.Event()

    async def stuck(batches: List[Sequence[int]]) -> List[int]:
        await never.wait()
        return flattened(batches)

    commit: GroupCommit[int, int] = GroupCommit(stuck, _interrupted)
    with anyio.move_on_after(0.05) as scope:
        await commit.submit([1])
    assert scope.cancelled_caught
    assert not commit.busy  # the next caller flushes


async def test_a_started_flush_completes_when_its_queued_callers_are_cancelled() -> None:
    rec = Recorder()
    async with anyio.create_task_group() as outer:
        outer.start_soon(rec.submit, 1)
        await rec.started.wait()
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(rec.submit, 2)  # queued behind the running flush
                await anyio.sleep(0.05)
                scope.cancel()  # the queued caller withdraws; the running flush goes on
        rec.gate.set()
    assert rec.batches == [[1]]
    assert rec.results == {1: [10]}
    assert not rec.commit.busy


class _Interrupt(BaseException):
    pass


async def test_a_flush_interrupted_by_a_base_exception_fails_its_other_callers_instead_of_leaving_them() -> None:
    gate = anyio.Event()

    async def interrupted(batches: List[Sequence[int]]) -> List[int]:
        await gate.wait()
        raise _Interrupt()

    commit: GroupCommit[int, int] = GroupCommit(interrupted, _interrupted)
    outcomes: Dict[int, str] = {}

    async def submit(i: int) -> None:
        try:
            await commit.submit([i])
        except _Interrupt:
            outcomes[i] = "interrupted"
        except RuntimeError as exc:
            outcomes[i] = str(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(submit, 1)
        await anyio.sleep(0.01)
        tg.start_soon(submit, 2)  # queued: handed the next flush, which carries 3's item
        await anyio.sleep(0.01)
        tg.start_soon(submit, 3)
        await anyio.sleep(0.01)
        gate.set()
    assert outcomes == {1: "interrupted", 2: "interrupted", 3: "the flush was interrupted: _Interrupt()"}
    assert not commit.busy
