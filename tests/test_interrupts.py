"""An interrupt at any await of a call never makes a later call return another task's result.

``InterruptAt`` throws an exception into a call when it is resumed for the k-th time (right after an
await completed: the moment a KeyboardInterrupt would land), for every k in turn until the call runs
to its end untouched. After each, later calls on the same client must each get their own task's result,
and a call running beside the interrupted one must get its own result or a typed error.
"""

from __future__ import annotations

from typing import Any, Callable, Coroutine, Dict, Generator, List, Tuple

import anyio
import pytest

from sandai_operator_client import AsyncOperatorClient, OperatorError, create_async_client
from sandai_operator_client.testing import Delay, Echo, FakeOperator

pytestmark = pytest.mark.anyio


class Interrupt(BaseException):
    """Stands for KeyboardInterrupt (which pytest itself would act on)."""


class InterruptAt:
    """Await ``coro``, throwing :class:`Interrupt` into it when it is resumed for the ``k``-th time."""

    def __init__(self, coro: Coroutine[Any, Any, Any], k: int) -> None:
        self.coro, self.k, self.fired = coro, k, False

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, resumed = self.coro, 0
        value: Any = None
        thrown: Any = None
        while True:
            try:
                yielded = coro.send(value) if thrown is None else coro.throw(thrown)
            except StopIteration as stop:
                return stop.value
            try:
                value, thrown = (yield yielded), None
            except BaseException as exc:  # a cancellation from the runtime: passed on
                value, thrown = None, exc
            resumed += 1
            if resumed == self.k and thrown is None:
                self.fired, thrown = True, Interrupt()


Call = Callable[[AsyncOperatorClient, str], Coroutine[Any, Any, Any]]


async def _sync(client: AsyncOperatorClient, text: str) -> Any:
    return (await client.sync([], {"text": text}, timeout=20))[1]["echo"]


async def _get(client: AsyncOperatorClient, text: str) -> Any:
    handle = await client.async_call([], {"text": text}, timeout=20)
    return (await handle.get(timeout=20))["results"]["echo"]


async def _batch(client: AsyncOperatorClient, text: str) -> Any:
    results = await client.batch_sync_detailed([([], {"text": f"{text}/{i}"}) for i in range(3)], timeout=20)
    return [r.results["echo"] if r.success else r.error for r in results]


async def _collect(client: AsyncOperatorClient, text: str) -> Any:
    submitted = await client.batch_submit([([], {"text": f"{text}/{i}"}) for i in range(3)], timeout=20)
    results = await client.batch_collect(submitted, timeout=20)
    return [r.results["echo"] if r.success else r.error for r in results]


def _expected(call: Call, text: str) -> Any:
    return [f"{text}/{i}" for i in range(3)] if call in (_batch, _collect) else text


CALLS: Dict[str, Call] = {"sync": _sync, "get": _get, "batch": _batch, "collect": _collect}


def _state(client: AsyncOperatorClient) -> str:
    return repr(client.statistics())


async def _interrupt_everywhere(client: AsyncOperatorClient, call: Call, name: str) -> Tuple[int, List[str]]:
    """Interrupt ``call`` at its 1st, 2nd, ... resumption; returns how many points were hit and the
    problems seen (foreign results, untyped errors, hangs)."""
    problems: List[str] = []
    k = 0
    while True:
        k += 1
        text = f"{name}-{k}"
        interrupted = InterruptAt(call(client, text), k)
        beside: List[Any] = []

        async def run_beside(text: str = text, beside: List[Any] = beside) -> None:  # shares pipelines
            try:  # and the reader with the interrupted call
                beside.append(await call(client, f"{text}-beside"))
            except OperatorError as exc:
                beside.append(exc)

        result: Any = None
        try:
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(run_beside)
                    try:
                        result = await interrupted
                    except Interrupt:
                        pass
                    except OperatorError as exc:
                        result = exc
        except TimeoutError:
            problems.append(f"k={k}: the interrupted call or the one beside hung ({_state(client)})")
            return k, problems
        if not interrupted.fired:
            if result != _expected(call, text):
                problems.append(f"k={k}: the untouched call returned {result!r}")
            return k - 1, problems
        if beside and not isinstance(beside[0], OperatorError) and beside[0] != _expected(call, f"{text}-beside"):
            problems.append(f"k={k}: the call beside returned {beside[0]!r}")
        for after in ("after", "again"):
            try:
                with anyio.fail_after(30):
                    got = await call(client, f"{text}-{after}")
            except BaseException as exc:
                problems.append(f"k={k}: the call {after} the interrupt raised {exc!r} ({_state(client)})")
                return k, problems
            if got != _expected(call, f"{text}-{after}"):
                problems.append(f"k={k}: the call {after} the interrupt returned {got!r}")


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("same_database", [True, False], ids=["carried", "subscribe-first"])
@pytest.mark.parametrize("delay", [0, 0.02], ids=["fast", "slow"])
async def test_an_interrupt_at_any_await_never_poisons_later_calls(
    redis_url: str, sandai_operator_name: str, name: str, same_database: bool, delay: float
) -> None:
    # same database: the LPUSH rides with the SUBSCRIBE on the hub's RESP3 connection; another one:
    # it goes through the command channel once the subscription is confirmed. A slow operator makes
    # the calls park and hand the reading over, a fast one finds replies waiting.
    broker = redis_url if same_database else f"{redis_url.rsplit('/', 1)[0]}/1"
    operator = FakeOperator(
        sandai_operator_name,
        broker_url=broker,
        result_backend=redis_url,
        behaviour=lambda payload: Delay(delay, Echo()) if delay else Echo(),
    )
    with operator.in_thread():
        async with create_async_client(
            operator.name, "v1", broker_url=broker, result_backend=redis_url, timeout=20
        ) as client:
            points, problems = await _interrupt_everywhere(client, CALLS[name], name)
            assert points >= 1, "the call never suspended: the harness interrupted nothing"
            assert problems == []
            assert client.statistics().watched_channels == 0 and client.statistics().waiting_calls == 0
