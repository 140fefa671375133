"""The blocking client inside a running trio loop, under gevent, and closed from another thread mid-call."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
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


def test_the_blocking_client_inside_an_asyncio_task_leaves_asyncio_intact(fake_operator: FakeOperator) -> None:
    import asyncio

    with create_client(fake_operator.name, "v1", broker_url=fake_operator.broker_url, timeout=20) as client:

        async def main() -> Tuple[object, int]:
            result = client.sync([], {"text": "from asyncio"})  # blocks this loop, as the seed did
            ticks = 0
            for _ in range(3):
                await asyncio.sleep(0)
                ticks += 1
            await asyncio.gather(asyncio.sleep(0.01), asyncio.sleep(0))
            return result[1]["echo"], ticks

        assert asyncio.run(main()) == ("from asyncio", 3)
        assert client.sync([], {"text": "after"})[1]["echo"] == "after"


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


def test_the_blocking_client_under_gevent_serves_many_greenlets(redis_url: str, sandai_operator_name: str) -> None:
    # gevent makes threads greenlets of one thread: the seed's 100 concurrent greenlets all got answers,
    # ours got "could not start the client's event loop thread" for 99 of them
    pytest.importorskip("gevent")  # a dev dependency: present wherever the suite runs
    operator = FakeOperator(sandai_operator_name, broker_url=redis_url)
    child = Path(__file__).with_name("gevent_child.py")
    with operator.in_thread():
        run = subprocess.run(
            [sys.executable, str(child), sandai_operator_name, redis_url, "100"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.splitlines()[-1])
    assert seen["errors"] == [] and seen["answers"] == [str(i) for i in range(100)]
    assert seen["ran_during_call"] is True  # the hub ran other greenlets while one waited
    assert seen["cut"] == "gevent.Timeout" and seen["task_timeout"] is True
    assert seen["after"] == "after" and seen["batch"] == 50 and seen["iter"] == 20
