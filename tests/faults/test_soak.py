"""Soak: a million tasks through the fake operator with random delays and injected disconnects.

Not in the default run (marker ``soak``): ``SANDAI_SOAK_TASKS=1000000 .venv/bin/python -m pytest -m soak``.
Every task ends with exactly one result; nothing is lost, nothing is run twice.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any, Dict, List, Tuple

import anyio
import pytest
import redis

from sandai_operator_client import PublishOutcomeUnknownError, create_async_client
from sandai_operator_client.testing import Delay, Echo, FakeOperator

from .conftest import PrivateRedis

pytestmark = [pytest.mark.soak, pytest.mark.anyio, pytest.mark.timeout(0)]


class _RunLog(list):  # type: ignore[type-arg]
    """The fake's log, reduced to when each task id first ran, and every run of one that had run before."""

    def __init__(self) -> None:
        super().__init__()
        self.first: Dict[str, float] = {}
        self.again: List[Tuple[str, float, float, Any]] = []  # (task id, first run, this run, its options)

    def append(self, payload: Any) -> None:
        now = time.monotonic()
        task_id = payload["_task_id"]
        if task_id in self.first:
            self.again.append((task_id, self.first[task_id], now, payload.get("options")))
        else:
            self.first[task_id] = now


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_soak(private_redis: PrivateRedis) -> None:
    total = int(os.environ.get("SANDAI_SOAK_TASKS", "1000000"))
    rng = random.Random(7)
    operator = FakeOperator(
        "soak", broker_url=private_redis.url, reliable=True, behaviour=lambda p: Delay(rng.random() * 0.01, Echo())
    )
    runs = _RunLog()
    operator.received = runs
    admin = redis.Redis.from_url(private_redis.url)
    results: Dict[str, str] = {}
    kills = 0
    kill_times: List[float] = []
    with operator.in_thread():
        async with create_async_client("soak", "v1", broker_url=private_redis.url, timeout=300) as client:
            done = anyio.Event()

            async def disconnect() -> None:
                nonlocal kills
                while not done.is_set():
                    await anyio.sleep(2)
                    kill_times.append(time.monotonic())
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
                            else:  # sent again only when it surely did not go out (an unknown may run)
                                assert not result.submitted, f"submitted task without result: {result.error!r}"
                                assert not isinstance(result.error, PublishOutcomeUnknownError), result.error
                                retry.append(text)
                        pending = retry
                    sent += size
                    print("soak progress", sent, "kills", kills, flush=True)
                done.set()
                tg.cancel_scope.cancel()
    assert len(results) == total and sorted(map(int, results.values())) == list(range(total))
    # What a second run looked like, so that one can be told from the other causes: how long after the
    # first, and how close to a connection kill.
    assert not runs.again, "tasks ran twice: " + "; ".join(
        f"{task_id} ({options!r}) again after {again - first:.3f}s, nearest kill "
        f"{min((k - first for k in kill_times), key=abs, default=float('nan')):+.3f}s from its first run"
        for task_id, first, again, options in runs.again[:5]
    )
    assert kills > 0
