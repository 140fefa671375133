"""A user's program, type-checked with ``mypy --strict`` by tests/test_typing.py (and by ``make dist``
against the installed wheel): both import paths, the seed's submodules, float timeouts, typed results."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import anyio

from sandai.operator_client import BatchTaskResult, OperatorClient, TaskTimeoutError, create_client
from sandai.operator_client.client import AsyncOperatorClient, create_async_client
from sandai.operator_client.config import VALID_PRIORITIES, ConnectionPolicy
from sandai.operator_client.exceptions import OperatorError, TaskExecutionError
from sandai.operator_client.types import HealthCheckResult
from sandai_operator_client import TaskHandle


def blocking(url: str) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    client: OperatorClient = create_client(
        "echo",
        "v1",
        broker_url=url,
        timeout=2.5,
        priority="high",
        connection=ConnectionPolicy(io_timeout=5.0),
        task_serializer="json",
    )
    with client:
        health: HealthCheckResult = client.probe(timeout=1.5)
        assert health.response_ok or health.error
        handle: TaskHandle = client.async_call([], {"text": "x"}, timeout=0.5)
        try:
            handle.get(timeout=0.25)
        except TaskTimeoutError as exc:
            print(exc.task_id)
        results: List[BatchTaskResult] = client.batch_sync_detailed([([], {"n": 1})], timeout=1.5)
        print([r.success for r in results], VALID_PRIORITIES)
        return client.sync([], {"text": "x"}, "low", timeout=1.5)


async def concurrent(url: str) -> None:
    client: AsyncOperatorClient = create_async_client("echo", "v1", broker_url=url, timeout=30.0)
    async with client:
        try:
            artifacts, results = await client.sync([], {}, timeout=0.5)
            print(len(artifacts), results.get("echo"))
        except TaskExecutionError as exc:
            print(exc.error_type, exc.error_details)
        except OperatorError as exc:
            print(exc)
        handle = await client.async_call([], {})
        print(await handle.get(timeout=1.5))


if __name__ == "__main__":
    anyio.run(concurrent, "redis://127.0.0.1:6379/0")
