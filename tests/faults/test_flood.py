"""A result connection flooded with messages still lets other tasks run and a cancel land (the reader
yields every few reads however fast data comes)."""

from __future__ import annotations

import json
import threading
import time
from typing import List

import anyio
import anyio.lowlevel
import pytest
import redis

from sandai_operator_client import create_async_client
from sandai_operator_client.protocol.results import result_key

from .conftest import PrivateRedis

pytestmark = pytest.mark.anyio

FLOOD = 40_000  # non-final records of ~100 bytes: a backlog the reader needs many reads to drain


async def test_a_flooded_reader_yields_and_a_cancel_lands(private_redis: PrivateRedis) -> None:
    admin = redis.Redis.from_url(private_redis.url)
    task_id = "flooded-task"
    channel = result_key(task_id)
    started = json.dumps({"status": "STARTED", "result": None, "task_id": task_id, "pad": "x" * 40})
    final = json.dumps({"status": "SUCCESS", "result": {"status": "success"}, "task_id": task_id})
    ticks: List[int] = []
    outcome: List[str] = []

    def flood() -> None:  # while the client's loop is blocked, so it all waits in the socket
        pipe = admin.pipeline(transaction=False)
        for _ in range(FLOOD):
            pipe.publish(channel, started)
        pipe.publish(channel, final)  # the result comes last: reading everything at once would get it
        pipe.execute()

    async with create_async_client("flood", "v1", broker_url=private_redis.url) as client:
        handle = client.handle(task_id)

        async def wait() -> None:
            waiting.set()
            await handle.get(timeout=60)
            outcome.append("result")

        async def ticker() -> None:
            await waiting.wait()
            await anyio.sleep(0.2)  # the subscription is confirmed by now
            thread = threading.Thread(target=flood)
            thread.start()
            thread.join()
            time.sleep(0.3)  # the loop is blocked: the flood piles up in the socket
            for i in range(3):
                ticks.append(i)
                await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()

        waiting = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            tg.start_soon(ticker)
    admin.close()
    assert len(ticks) == 3
    # the ticker ran while the reader drained the flood, and its cancel landed before the result
    assert outcome == [], outcome
