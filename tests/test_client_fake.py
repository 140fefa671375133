"""Both facades against real Redis and the FakeOperator: the seed's whole API surface."""

from __future__ import annotations

import time
from typing import Any, List

import anyio
import pytest
import redis

import sandai.operator_client as alias
import sandai_operator_client as soc
from sandai_operator_client import (
    AsyncOperatorClient,
    InvalidPriorityError,
    InvalidTaskInputError,
    OperatorClient,
    OperatorConnectionError,
    TaskCancelledError,
    TaskDeadlineExceededError,
    TaskExecutionError,
    TaskTimeoutError,
    create_async_client,
    create_client,
)
from sandai_operator_client.testing import Crash, Delay, Echo, Fail, FakeOperator, Succeed

pytestmark = pytest.mark.anyio
ART = [{"uri": "file:///tmp/in.mp4", "slot": "video"}]


def test_alias_package_is_the_same_api() -> None:
    assert alias.create_client is soc.create_client
    assert alias.AsyncOperatorClient is soc.AsyncOperatorClient
    assert set(alias.__all__) == set(soc.__all__)


# ---------------------------------------------------------------------------- sync facade
def test_sync_roundtrip(operator_client: OperatorClient, fake_operator: FakeOperator) -> None:
    artifacts, results = operator_client.sync(ART, {"text": "hi"}, persistent_output=True, cancel_key="ck-x")
    assert results == {"echo": "hi", "n_artifacts": 1}
    assert artifacts == [{"uri": "file:///tmp/in.mp4", "slot": "video"}]
    payload = fake_operator.received[0]
    assert payload["meta"] == {"persistent-output": True} and payload["cancel_key"] == "ck-x"
    assert payload["deadline"] == pytest.approx(time.time() + 60, abs=5)  # client timeout -> deadline


def test_sync_errors(operator_client: OperatorClient, fake_operator: FakeOperator, redis_admin: redis.Redis) -> None:
    with pytest.raises(TaskExecutionError) as info:
        operator_client.sync([], {"fail": True, "text": "t"})
    assert info.value.error_type == "EchoFailure" and info.value.error_details == {"text": "t"}
    redis_admin.set(f"cancel-{fake_operator.name}", 1, ex=60)
    try:
        with pytest.raises(TaskCancelledError) as cancel:
            operator_client.sync([], {}, cancel_key=f"cancel-{fake_operator.name}")
        assert cancel.value.cancel_key == f"cancel-{fake_operator.name}"
    finally:
        redis_admin.delete(f"cancel-{fake_operator.name}")
    fake_operator.behaviour = lambda payload: Crash()
    started = time.monotonic()
    with pytest.raises(TaskTimeoutError):
        operator_client.sync([], {}, timeout=1)
    assert time.monotonic() - started < 10


def test_deadline_exceeded(redis_url: str, unique_name: str) -> None:
    operator = FakeOperator(unique_name, broker_url=redis_url, clock=lambda: time.time() + 3600)
    with operator.in_thread(), create_client(unique_name, "v1", broker_url=redis_url) as client:
        with pytest.raises(TaskDeadlineExceededError) as info:
            client.sync([], {}, timeout=30)
        assert info.value.current_time > info.value.deadline


def test_sync_handles(operator_client: OperatorClient, fake_operator: FakeOperator) -> None:
    fake_operator.behaviour = lambda payload: Delay(0.5, Echo())
    handle = operator_client.async_call([], {"text": "later"})
    assert handle.id == handle.task_id
    assert handle.state == "PENDING" and handle.state() == "PENDING" and not handle.ready()
    envelope = handle.get(timeout=10)
    assert envelope["status"] == "success" and envelope["results"]["echo"] == "later"
    assert handle.ready() and handle.state == "SUCCESS" and handle.successful() and not handle.failed()
    handle.forget()
    assert handle.state == "PENDING"
    fake_operator.behaviour = lambda payload: Crash()
    with pytest.raises(TaskTimeoutError):
        operator_client.async_call([], {}).get(timeout=0.3)
    assert isinstance(operator_client.async_call([], {}).get(timeout=0.2, propagate=False), TaskTimeoutError)


def test_desc_is_cached(operator_client: OperatorClient, fake_operator: FakeOperator) -> None:
    assert operator_client.desc["doc"] == f"Fake operator {fake_operator.name} v1"
    assert operator_client.desc is operator_client.desc
    assert next(p for p in fake_operator.received if p.get("task_type") == "desc")["_priority"] == "high"
    assert len([p for p in fake_operator.received if p.get("task_type") == "desc"]) == 1


@pytest.mark.parametrize("priority", ["high", "normal", "low", "very_low"])
def test_priorities_route_to_queues(
    operator_client: OperatorClient, fake_operator: FakeOperator, priority: str
) -> None:
    operator_client.sync([], {"text": priority}, priority=priority)
    assert fake_operator.received[-1]["_priority"] == priority
    assert operator_client.get_queue_info()[priority] == f"{priority}.{fake_operator.name}.v1"


def test_invalid_priority(operator_client: OperatorClient, redis_url: str) -> None:
    with pytest.raises(InvalidPriorityError):
        OperatorClient("x", "v1", broker_url=redis_url, priority="urgent")
    with pytest.raises(InvalidPriorityError):
        operator_client.sync([], {}, priority="urgent")
    with pytest.raises(InvalidPriorityError):
        operator_client.batch_sync_detailed([([], {})], priority="urgent")


def test_bad_input_never_reaches_the_queue(
    operator_client: OperatorClient, fake_operator: FakeOperator, redis_admin: redis.Redis
) -> None:
    with pytest.raises(InvalidTaskInputError):
        operator_client.sync([{"no": "uri"}], {})
    with pytest.raises(InvalidTaskInputError):
        operator_client.async_call([], {"x": object()})
    assert fake_operator.received == []


def test_batches(operator_client: OperatorClient, fake_operator: FakeOperator) -> None:
    tasks: List[Any] = [([], {"text": str(i)}) for i in range(20)]
    tasks[3] = ([], "not a dict")
    tasks[5] = ([], {"fail": True})
    detailed = operator_client.batch_sync_detailed(tasks, timeout=30)
    assert [r.index for r in detailed] == list(range(20))
    assert not detailed[3].submitted and isinstance(detailed[3].error, InvalidTaskInputError)
    assert detailed[5].submitted and isinstance(detailed[5].error, TaskExecutionError)
    assert all(r.success and r.results["echo"] == str(r.index) for r in detailed if r.index not in (3, 5))
    first, other = (list(detailed[i].results) for i in (0, 1))
    assert first == other and all(a is b for a, b in zip(first, other))  # a batch's results share their keys
    legacy = operator_client.batch_sync(tasks, timeout=30)
    assert legacy[3] == ([], {}) and legacy[5] == ([], {}) and legacy[7] == ([], {"echo": "7", "n_artifacts": 0})
    handles = operator_client.batch_async(tasks)
    assert handles[3] is None and handles[0] is not None and handles[0].get(timeout=10)["status"] == "success"
    submitted = operator_client.batch_submit(tasks)
    assert [s.submitted for s in submitted].count(False) == 1
    collected = operator_client.batch_collect(submitted, timeout=30)
    assert [r.task_id for r in collected] == [s.task_id for s in submitted]
    assert collected[3].error is submitted[3].error


def test_batch_timeout_is_one_budget(operator_client: OperatorClient, fake_operator: FakeOperator) -> None:
    fake_operator.behaviour = lambda p: Crash() if p["options"].get("lost") else Delay(0.2, Echo())
    tasks = [([], {"text": str(i), "lost": i % 4 == 0}) for i in range(12)]
    started = time.monotonic()
    results = operator_client.batch_sync_detailed(tasks, timeout=2)
    elapsed = time.monotonic() - started
    assert elapsed < 6  # one budget for the batch, not 2 s per task
    for r in results:
        if r.index % 4 == 0:
            assert isinstance(r.error, TaskTimeoutError)
        else:
            assert r.success


def test_probe_and_ping(operator_client: OperatorClient, fake_operator: FakeOperator) -> None:
    health = operator_client.probe(timeout=10)
    assert health.submit_ok and health.retrieval_ok and health.response_ok and health.error is None
    assert fake_operator.received[-1]["_priority"] == "low" and fake_operator.received[-1]["options"] == {"test": True}
    assert operator_client.ping()


def test_probe_without_operator(redis_url: str, unique_name: str) -> None:
    with create_client(unique_name, "v1", broker_url=redis_url) as client:
        health = client.probe(timeout=1)
    assert health.submit_ok and not health.retrieval_ok and "timed out" in (health.error or "")


def test_dead_broker_is_a_typed_error_within_seconds(unique_name: str) -> None:
    started = time.monotonic()
    with create_client(unique_name, "v1", broker_url="redis://:s3cret@127.0.0.1:1/0") as client:
        health = client.probe(timeout=5)
        assert not health.submit_ok and not client.ping()
        with pytest.raises(OperatorConnectionError) as info:
            client.sync([], {}, timeout=5)
        results = client.batch_sync_detailed([([], {}), ([], {})], timeout=5)
    assert all(not r.submitted and isinstance(r.error, OperatorConnectionError) for r in results)
    assert time.monotonic() - started < 20
    assert "s3cret" not in str(info.value) and "s3cret" not in repr(client) and "s3cret" not in (health.error or "")


def test_environment_variables(
    monkeypatch: pytest.MonkeyPatch, fake_operator: FakeOperator, redis_admin: redis.Redis
) -> None:
    monkeypatch.setenv("SANDAI_OPERATOR_CELERY_BROKER_URL", fake_operator.broker_url)
    monkeypatch.setenv("SANDAI_OPERATOR_CELERY_TASK_SERIALIZER", "json")
    monkeypatch.setenv("SANDAI_OPERATOR_AUTO_FORGET_RESULT", "false")
    with create_client(fake_operator.name, "v1") as client:
        assert client.config.celery.task_serializer == "json" and client.auto_forget_result is False
        handle = client.async_call([], {"text": "env"})
        assert handle.get(timeout=10)["results"]["echo"] == "env"
        client.sync([], {"text": "kept"})
    assert redis_admin.exists(f"celery-task-meta-{handle.id}")
    redis_admin.delete(f"celery-task-meta-{handle.id}")


def test_serializers_by_keyword_or_environment_with_explicit_urls(
    monkeypatch: pytest.MonkeyPatch, fake_operator: FakeOperator
) -> None:
    # the seed ignored the variables when URLs were passed; here the keyword wins, else the variable
    url = fake_operator.broker_url
    with create_client(fake_operator.name, "v1", broker_url=url, task_serializer="json") as client:
        assert (client.task_serializer, client.result_serializer) == ("json", "json")
        assert client.sync([], {"text": "kw"})[1]["echo"] == "kw"
    monkeypatch.setenv("SANDAI_OPERATOR_CELERY_TASK_SERIALIZER", "json")
    with create_client(fake_operator.name, "v1", broker_url=url) as client:
        assert client.config.celery.task_serializer == "json"
    with create_client(fake_operator.name, "v1", broker_url=url, task_serializer="msgpack") as client:
        assert client.config.celery.task_serializer == "msgpack"
        assert client.sync([], {"text": "mp"})[1]["echo"] == "mp"
    with pytest.raises(ValueError, match="serializer"):
        create_client(fake_operator.name, "v1", broker_url=url, task_serializer="pickle")


def test_auto_forget_deletes_result_keys(
    operator_client: OperatorClient, fake_operator: FakeOperator, redis_admin: redis.Redis
) -> None:
    operator_client.sync([], {})
    operator_client.batch_sync_detailed([([], {}), ([], {})])
    ids = [p["_task_id"] for p in fake_operator.received]
    operator_client.close()
    assert not any(redis_admin.exists(f"celery-task-meta-{i}") for i in ids)


def test_closed_client_raises(redis_url: str, unique_name: str) -> None:
    client = create_client(unique_name, "v1", broker_url=redis_url)
    client.close()
    client.close()
    with pytest.raises(OperatorConnectionError, match="closed"):
        client.sync([], {})


# ---------------------------------------------------------------------------- async facade (asyncio and trio)
async def test_async_roundtrip(async_operator_client: AsyncOperatorClient, fake_operator: FakeOperator) -> None:
    assert await async_operator_client.sync(ART, {"text": "a"}) == (
        [{"uri": "file:///tmp/in.mp4", "slot": "video"}],
        {"echo": "a", "n_artifacts": 1},
    )
    handle = await async_operator_client.async_call([], {"text": "h"})
    assert (await handle)["results"]["echo"] == "h"
    assert await handle.ready() and await handle.state() == "SUCCESS"
    await handle.forget()
    assert await handle.state() == "PENDING"
    with pytest.raises(TaskExecutionError):
        await async_operator_client.sync([], {"fail": True})
    assert (await async_operator_client.probe(timeout=10)).response_ok and await async_operator_client.ping()


async def test_async_desc_one_request_under_concurrency(
    async_operator_client: AsyncOperatorClient, fake_operator: FakeOperator
) -> None:
    results = []

    async def ask() -> None:
        results.append(await async_operator_client.desc())

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(ask)
    assert len(results) == 10 and all(r == results[0] for r in results)
    assert len([p for p in fake_operator.received if p.get("task_type") == "desc"]) == 1


async def test_async_concurrent_calls(async_operator_client: AsyncOperatorClient) -> None:
    results: dict = {}

    async def call(i: int) -> None:
        results[i] = await async_operator_client.sync([], {"text": str(i)})

    async with anyio.create_task_group() as tg:
        for i in range(300):
            tg.start_soon(call, i)
    assert all(results[i][1]["echo"] == str(i) for i in range(300))
    assert async_operator_client.statistics().watched_channels == 0


async def test_async_batches(async_operator_client: AsyncOperatorClient, fake_operator: FakeOperator) -> None:
    fake_operator.behaviour = lambda p: Succeed({"i": p["options"]["i"]}) if p["options"]["i"] != 2 else Fail()
    tasks: List[Any] = [([], {"i": i}) for i in range(5)]
    detailed = await async_operator_client.batch_sync_detailed(tasks, timeout=30)
    assert [r.results for r in detailed if r.success] == [{"i": 0}, {"i": 1}, {"i": 3}, {"i": 4}]
    assert isinstance(detailed[2].error, TaskExecutionError)
    legacy = await async_operator_client.batch_sync(tasks, timeout=30)
    assert legacy[2] == ([], {}) and legacy[4] == ([], {"i": 4})
    handles = await async_operator_client.batch_async(tasks)
    assert (await handles[0].get(10))["results"] == {"i": 0}  # type: ignore[union-attr]
    submitted = await async_operator_client.batch_submit(tasks)
    collected = await async_operator_client.batch_collect(submitted, timeout=30)
    assert [r.index for r in collected] == list(range(5)) and collected[3].results == {"i": 3}


async def test_async_dead_backend(unique_name: str) -> None:
    client = create_async_client(unique_name, "v1", broker_url="redis://127.0.0.1:1/0")
    with anyio.fail_after(20):
        with pytest.raises(OperatorConnectionError):
            await client.sync([], {}, timeout=5)
        assert not (await client.probe(timeout=5)).submit_ok
    await client.aclose()


async def test_async_client_without_context_manager(fake_operator: FakeOperator) -> None:
    client = AsyncOperatorClient(fake_operator.name, "v1", broker_url=fake_operator.broker_url)
    assert (await client.sync([], {"text": "plain"}))[1]["echo"] == "plain"
    await client.aclose()


def test_redis_database_in_url(redis_url: str, unique_name: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/5"
    admin = redis.Redis.from_url(url)
    with (
        FakeOperator(unique_name, broker_url=url).in_thread(),
        create_client(unique_name, "v1", broker_url=url, auto_forget_result=False) as client,
    ):
        handle = client.async_call([], {"text": "db5"})
        assert handle.get(timeout=10)["results"]["echo"] == "db5"
    assert admin.exists(f"celery-task-meta-{handle.id}")  # written to db 5, where we read it
    admin.delete(f"celery-task-meta-{handle.id}")


def test_lpush_and_clean_up_ride_on_the_subscription(
    operator_client: OperatorClient, fake_operator: FakeOperator
) -> None:
    # broker and backend share a database: on RESP3 a call is one write on the hub's connection
    for i in range(3):
        assert operator_client.sync([], {"text": str(i)})[1]["echo"] == str(i)
    assert operator_client.batch_sync_detailed([([], {"text": "b"})] * 3)[0].success
    assert operator_client.statistics().connections == 1  # the hub's: the command channel was never needed


def test_refused_lpush_is_a_publish_error(
    operator_client: OperatorClient, fake_operator: FakeOperator, redis_admin: redis.Redis
) -> None:
    queue = f"normal.{fake_operator.name}.v1"
    redis_admin.set(queue, "not a list")  # every LPUSH now fails with WRONGTYPE
    try:
        with pytest.raises(OperatorConnectionError, match="WRONGTYPE"):
            operator_client.sync([], {"text": "x"}, timeout=5)
        results = operator_client.batch_sync_detailed([([], {"text": "y"})] * 2, timeout=5)
        assert [r.submitted for r in results] == [False, False]
        assert all(isinstance(r.error, OperatorConnectionError) for r in results)
        assert operator_client.statistics().watched_channels == 0
    finally:
        redis_admin.delete(queue)
    assert operator_client.sync([], {"text": "z"})[1]["echo"] == "z"


def test_broker_on_another_database_publishes_on_its_own_connection(redis_url: str, unique_name: str) -> None:
    broker = redis_url.rsplit("/", 1)[0] + "/6"
    with (
        FakeOperator(unique_name, broker_url=broker, result_backend=redis_url).in_thread(),
        create_client(unique_name, "v1", broker_url=broker, result_backend=redis_url) as client,
    ):
        assert client.sync([], {"text": "db6"})[1]["echo"] == "db6"
        assert client.statistics().connections == 2  # the hub's, and the broker's command channel
        assert client.batch_sync_detailed([([], {"text": "b"})] * 3)[2].success
