"""RabbitMQ as the broker (through kombu), Redis as the result backend, a real SDK operator consuming."""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any

import anyio
import pytest
from conftest import AmqpSdkOperator

from sandai_operator_client import (
    OperatorConnectionError,
    TaskExecutionError,
    create_async_client,
    create_client,
)

pytestmark = [pytest.mark.sdk, pytest.mark.anyio]


def test_tasks_sent_before_the_operator_ever_started(sdk_operator_amqp: AmqpSdkOperator) -> None:
    # the queue was declared by our first publish, so the early tasks waited instead of being dropped
    results = sdk_operator_amqp.early_client.batch_collect(sdk_operator_amqp.early, timeout=90)
    assert [r.results for r in results] == [{"echo": f"early-{i}", "n_artifacts": 0} for i in range(3)]


def test_amqp_sync_facade(sdk_operator_amqp: AmqpSdkOperator) -> None:
    op = sdk_operator_amqp
    op.wait_ready()
    with create_client(op.name, "v1", broker_url=op.broker_url, result_backend=op.result_backend, timeout=60) as client:
        for priority in ("high", "normal", "low", "very_low"):
            assert client.sync([], {"text": priority}, priority=priority)[1]["echo"] == priority
        with pytest.raises(TaskExecutionError):
            client.sync([], {"fail": True})
        tasks: Any = [([], {"text": str(i)}) for i in range(10)]
        tasks[4] = ([], {"fail": True})
        detailed = client.batch_sync_detailed(tasks, timeout=60)
        assert [r.success for r in detailed].count(False) == 1 and detailed[9].results["echo"] == "9"
        assert client.desc["options_schema"]["title"] == "EchoOptions"
        assert client.probe(timeout=30).response_ok
        assert set(client.queue_depth()) == {"high", "normal", "low", "very_low"}


async def test_amqp_async_facade(sdk_operator_amqp: AmqpSdkOperator) -> None:
    op = sdk_operator_amqp
    await anyio.to_thread.run_sync(op.wait_ready)
    async with create_async_client(
        op.name, "v1", broker_url=op.broker_url, result_backend=op.result_backend, timeout=60
    ) as client:
        results = {}

        async def call(i: int) -> None:
            results[i] = await client.sync([], {"text": str(i)}, priority=("high", "low")[i % 2])

        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(call, i)
        assert {i: r[1]["echo"] for i, r in results.items()} == {i: str(i) for i in range(30)}
        handle = await client.async_call([], {"text": "h"})
        assert (await handle.get(timeout=60))["results"]["echo"] == "h"


@pytest.mark.parametrize("broker", ["amqp://guest:wrong@127.0.0.1:5672//", "amqp://guest:guest@127.0.0.1:1//"])
def test_refused_or_down_broker(broker: str, redis_url: str) -> None:
    name = f"amqp-down-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    with create_client(name, "v1", broker_url=broker, result_backend=redis_url) as client:
        with pytest.raises(OperatorConnectionError) as info:
            client.sync([], {}, timeout=5)
        results = client.batch_sync_detailed([([], {}), ([], {}), ([], "bad")], timeout=5)
        assert not client.ping(timeout=2)
    assert time.monotonic() - started < 30
    assert "wrong" not in str(info.value)
    assert [type(r.error).__name__ for r in results] == ["OperatorConnectionError"] * 2 + ["InvalidTaskInputError"]
    assert not any(r.submitted for r in results)


def test_kombu_imported_only_for_amqp() -> None:
    import subprocess

    code = (
        "import sys, sandai_operator_client as s; c = s.create_client('x', 'v1', broker_url='redis://127.0.0.1:6379/0');"
        "print('kombu' in sys.modules, 'redis' in sys.modules, 'celery' in sys.modules); c.close()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]


@pytest.fixture
def amqp_fake(amqp_url: str, redis_url: str) -> Any:
    from conftest import delete_amqp_queues

    from sandai_operator_client.testing import FakeOperator

    operator = FakeOperator(f"fake-amqp-{uuid.uuid4().hex[:8]}", broker_url=amqp_url, result_backend=redis_url)
    try:
        with operator.in_thread():
            yield operator
    finally:
        delete_amqp_queues(operator.name)


def test_fake_operator_on_amqp_sync(amqp_fake: Any) -> None:
    with create_client(
        amqp_fake.name, "v1", broker_url=amqp_fake.broker_url, result_backend=amqp_fake.result_backend
    ) as client:
        assert client.sync([], {"text": "rabbit"})[1]["echo"] == "rabbit"
        for priority in ("high", "normal", "low", "very_low"):
            client.sync([], {}, priority=priority)
            assert amqp_fake.received[-1]["_priority"] == priority
        results = client.batch_sync_detailed([([], {"text": str(i)}) for i in range(200)], timeout=60)
        assert all(r.success and r.results["echo"] == str(r.index) for r in results)


async def test_fake_operator_on_amqp_async(amqp_fake: Any) -> None:
    async with create_async_client(
        amqp_fake.name, "v1", broker_url=amqp_fake.broker_url, result_backend=amqp_fake.result_backend
    ) as client:
        with pytest.raises(TaskExecutionError):
            await client.sync([], {"fail": True})
        assert (await client.desc())["doc"].startswith("Fake operator")
