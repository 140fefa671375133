"""The blocking client inside a running trio loop, and closed from another thread mid-call."""

from __future__ import annotations

import threading
import time
from typing import List, Tuple

import pytest
import trio

from sandai_operator_client import OperatorConnectionError, create_client
from sandai_operator_client.testing import Delay, Echo, FakeOperator


def test_the_blocking_client_inside_a_trio_task_leaves_trio_intact(fake_operator: FakeOperator) -> None:
    # a loop of ours driven in trio's thread would take it over (trio's scheduler got our yields): the
    # call goes to the client's loop thread instead and blocks this trio task, as the seed did
    with create_client(fake_operator.name, "v1", broker_url=fake_operator.broker_url, timeout=20) as client:

        async def main() -> Tuple[object, int]:
            result = client.sync([], {"text": "from trio"})
            ticks = 0
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep, 0.01)
                for _ in range(3):
                    await trio.sleep(0)
                    ticks += 1
            return result[1]["echo"], ticks

        assert trio.run(main) == ("from trio", 3)
        assert client.sync([], {"text": "after"})[1]["echo"] == "after"  # and inline again outside it


def test_close_from_another_thread_ends_a_call_in_flight_at_once(redis_url: str, sandai_operator_name: str) -> None:
    operator = FakeOperator(sandai_operator_name, broker_url=redis_url, behaviour=lambda p: Delay(30, Echo()))
    outcome: List[Tuple[BaseException, float]] = []
    with operator.in_thread():
        client = create_client(sandai_operator_name, "v1", broker_url=redis_url, timeout=600)

        def call() -> None:
            started = time.monotonic()
            try:
                client.sync([], {})
            except BaseException as exc:
                outcome.append((exc, time.monotonic() - started))

        caller = threading.Thread(target=call)
        caller.start()
        while not operator.received:  # the call is in flight, waiting for its result
            time.sleep(0.01)
        started = time.monotonic()
        client.close()
        closing = time.monotonic() - started
        caller.join(5)
    assert closing < 1 and not caller.is_alive()
    error, took = outcome[0]
    assert isinstance(error, OperatorConnectionError) and "closed" in str(error), error
    assert took < 600
    with pytest.raises(OperatorConnectionError, match="closed"):
        client.sync([], {})
