"""Soak: a million tasks through the fake operator with random delays and injected disconnects.

Not in the default run (marker ``soak``): ``SANDAI_SOAK_TASKS=1000000 .venv/bin/python -m pytest -m soak``.
Every task ends with exactly one result; nothing is lost, nothing is run twice.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from typing import Any, Dict

import anyio
import pytest
import redis

from sandai_operator_client import create_async_client
from sandai_operator_client.testing import Delay, Echo, FakeOperator

from .conftest import PrivateRedis

pytestmark = [pytest.mark.soak, pytest.mark.anyio, pytest.mark.timeout(0)]


class _RunCounter(list):  # type: ignore[type-arg]
    """The fake's log, reduced to how often each task id was run."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: Counter[str] = Counter()

    def append(self, payload: Any) -> None:
        self.runs[payload["_task_id"]] += 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_soak(private_redis: PrivateRedis) -> None:
    total = int(os.environ.get("SANDAI_SOAK_TASKS", "1000000"))
    rng = random.Random(7)
    operator = FakeOperator("soak", broker_url=private_redis.url, reliable=True,
                            behaviour=lambda p: Delay(rng.random() * 0.01, Echo()))
    runs = _RunCounter()
    operator.received = runs
    admin = redis.Redis.from_url(private_redis.url)
    results: Dict[str, str] = {}
    kills = 0
    with operator.in_thread():
        async with create_async_client("soak", "v1", broker_url=private_redis.url, timeout=300) as client:
            done = anyio.Event()

            async def disconnect() -> None:
                nonlocal kills
                while not done.is_set():
                    await anyio.sleep(2)
                    kills += admin.client_kill_filter(_type="pubsub", skipme=True)
                    kills += admin.client_kill_filter(_type="normal", skipme=True)

            async with anyio.create_task_group() as tg:
                tg.start_soon(disconnect)
                sent = 0
                while sent < total:
                    size = min(5000, total - sent)
                    texts = [str(sent + i) for i in range(size)]
                    pending = list(texts)
                    while pending:  # a task whose submission failed is sent again; a submitted one is awaited
                        batch = await client.batch_sync_detailed([([], {"text": t}) for t in pending], timeout=300)
                        retry = []
                        for text, result in zip(pending, batch):
                            if result.success:
                                assert result.task_id not in results
                                results[result.task_id] = text
                                assert result.results["echo"] == text
                            else:
                                assert not result.submitted, f"submitted task without result: {result.error!r}"
                                retry.append(text)
                        pending = retry
                    sent += size
                    print("soak progress", sent, "kills", kills, flush=True)
                done.set()
                tg.cancel_scope.cancel()
    assert len(results) == total and sorted(map(int, results.values())) == list(range(total))
    assert max(runs.runs.values()) == 1, "a task ran twice"
    assert kills > 0
