"""The core's shortcuts to anyio's clock and events behave as anyio's under asyncio and trio."""

from __future__ import annotations

import anyio
import pytest

from sandai_operator_client._io.loop import current_time, new_wakeup, wake

pytestmark = pytest.mark.anyio


async def test_current_time_is_anyios_clock() -> None:
    before = anyio.current_time()
    now = current_time()
    assert before <= now <= anyio.current_time()


async def test_a_wakeup_wakes_its_one_waiter_with_a_value() -> None:
    wakeup = new_wakeup()
    assert not wakeup.done()
    woken = []

    async def waiter() -> None:
        woken.append(await wakeup)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.sleep(0.01)
        assert not woken
        wake(wakeup, "first")
        wake(wakeup, "second")  # a done wakeup keeps its value
    assert woken == ["first"] and wakeup.done() and not wakeup.cancelled() and wakeup.result() == "first"


async def test_a_wakeup_whose_waiter_was_cancelled_ignores_wake() -> None:
    wakeup = new_wakeup()
    with anyio.move_on_after(0.01) as scope:
        await wakeup
    assert scope.cancelled_caught
    wake(wakeup)  # nobody to wake, and no error
    assert new_wakeup() is not wakeup
