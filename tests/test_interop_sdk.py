"""Against a real operator built with sandai-operator-sdk 0.6.2 (its own virtualenv, a subprocess)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from conftest import SdkOperator

from sandai_operator_client import (
    TaskCancelledError,
    TaskDeadlineExceededError,
    TaskExecutionError,
    create_async_client,
    create_client,
)
from sandai_operator_client.protocol.operator import parse_task_result

pytestmark = [pytest.mark.sdk, pytest.mark.anyio]
ARTIFACT = Path(__file__).resolve().parent.parent / "protocol_fixtures" / "README.md"


def test_sdk_sync_facade(sdk_operator: SdkOperator, redis_admin: redis.Redis) -> None:
    with create_client(sdk_operator.name, "v1", broker_url=sdk_operator.broker_url, timeout=60) as client:
        artifacts, results = client.sync(
            [{"uri": f"file://{ARTIFACT}", "slot": "doc"}], {"text": "hi"}, persistent_output=True
        )
        assert results == {"echo": "hi", "n_artifacts": 1}
        assert artifacts[0]["slot"] == "doc" and artifacts[0]["uri"]
        assert client.desc["options_schema"]["title"] == "EchoOptions"
        with pytest.raises(TaskExecutionError) as info:
            client.sync([], {"text": "x", "fail": True})
        assert info.value.error_type == "EchoFailure" and info.value.error_details["text"] == "x"

        handle = client.async_call([], {}, timeout=1e-6)  # the deadline is past when the operator sees it
        with pytest.raises(TaskDeadlineExceededError):
            parse_task_result(handle.id, handle.get(timeout=60))
        assert handle.state == "SUCCESS"  # the operator answered; the envelope says the task was skipped

        key = f"cancel-{uuid.uuid4().hex}"
        redis_admin.set(key, 1, ex=120)
        try:
            with pytest.raises(TaskCancelledError) as cancelled:
                client.sync([], {}, cancel_key=key)
            assert cancelled.value.cancel_key == key
        finally:
            redis_admin.delete(key)

        for priority in ("high", "normal", "low", "very_low"):
            assert client.sync([], {"text": priority}, priority=priority)[1]["echo"] == priority

        tasks: Any = [([], {"text": str(i)}) for i in range(6)]
        tasks[2] = ([], {"fail": True})
        detailed = client.batch_sync_detailed(tasks, timeout=60)
        assert [r.success for r in detailed] == [True, True, False, True, True, True]
        assert client.batch_sync(tasks, timeout=60)[2] == ([], {})
        collected = client.batch_collect(client.batch_submit(tasks), timeout=60)
        assert collected[5].results == {"echo": "5", "n_artifacts": 0}
        handles = client.batch_async(tasks)
        assert handles[1].get(timeout=60)["results"]["echo"] == "1"  # type: ignore[union-attr]
        health = client.probe(timeout=30)
        assert health.submit_ok and health.retrieval_ok and health.response_ok


async def test_sdk_async_facade(sdk_operator: SdkOperator) -> None:
    async with create_async_client(sdk_operator.name, "v1", broker_url=sdk_operator.broker_url, timeout=60) as client:
        results = {}

        async def call(i: int) -> None:
            results[i] = await client.sync([], {"text": str(i)}, priority="high" if i % 2 else "low")

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(call, i)
        assert {i: r[1]["echo"] for i, r in results.items()} == {i: str(i) for i in range(20)}
        assert (await client.desc())["results_schema"]["title"] == "EchoResults"
        detailed = await client.batch_sync_detailed([([], {"text": "a"}), ([], {"fail": True})], timeout=60)
        assert detailed[0].success and isinstance(detailed[1].error, TaskExecutionError)
        assert (await client.probe(timeout=30)).response_ok


def test_sdk_json_tasks_and_msgpack_results(
    redis_url: str, tmp_path: Path, redis_admin: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an operator whose results are msgpack, a client whose tasks are json: both directions interoperate
    op = SdkOperator(
        redis_url, f"sdk-mp-{uuid.uuid4().hex[:8]}", tmp_path, {"SANDAI_OPERATOR_CELERY_RESULT_SERIALIZER": "msgpack"}
    )
    try:
        op.wait_ready()
        monkeypatch.setenv("SANDAI_OPERATOR_CELERY_BROKER_URL", redis_url)
        monkeypatch.setenv("SANDAI_OPERATOR_CELERY_TASK_SERIALIZER", "json")
        with create_client(op.name, "v1", timeout=60) as client:
            assert client.config.celery.task_serializer == "json"
            assert client.sync([], {"text": "mp"})[1] == {"echo": "mp", "n_artifacts": 0}
    finally:
        op.stop()
        for key in redis_admin.scan_iter(match=f"*{op.name}*"):
            redis_admin.delete(key)
