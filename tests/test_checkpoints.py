"""trio's rule: every await of a public call is a checkpoint (it can be cancelled and lets others run),
even when the call finds it has nothing to wait for."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, List

import pytest

from sandai_operator_client import AsyncOperatorClient, create_async_client
from sandai_operator_client.testing import FakeOperator

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # trio.testing tells a checkpoint from a plain return


async def test_calls_with_nothing_to_wait_for_are_checkpoints(
    async_operator_client: AsyncOperatorClient, fake_operator: FakeOperator
) -> None:
    from trio.testing import assert_checkpoints

    client = async_operator_client
    await client.desc()  # asked once; cached from now on
    handle = await client.async_call([], {"text": "done"})
    await handle.get(timeout=10)
    calls: List[Callable[[], Awaitable[Any]]] = [
        client.desc,
        lambda: client.batch_sync_detailed([]),
        lambda: client.batch_sync([]),
        lambda: client.batch_submit([]),
        lambda: client.batch_async([]),
        lambda: client.batch_collect([]),
        lambda: client.batch_sync_detailed([("not a pair",)]),  # nothing valid: nothing sent
        lambda: _drain(client.batch_iter([])),
        lambda: _drain(client.as_completed([])),
    ]
    for call in calls:
        with assert_checkpoints():
            await call()


async def _drain(results: Any) -> List[Any]:
    return [result async for result in results]


async def test_closing_a_closed_client_is_a_checkpoint(fake_operator: FakeOperator, redis_url: str) -> None:
    from trio.testing import assert_checkpoints

    client = create_async_client(fake_operator.name, "v1", broker_url=redis_url)
    await client.aclose()
    with assert_checkpoints():
        await client.aclose()
