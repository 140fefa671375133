"""A timeout says where the task is (real Redis): still queued, taken by an operator, or no trace."""

from __future__ import annotations

from typing import Iterator

import pytest
import redis

from sandai_operator_client import TaskTimeoutError, create_client
from sandai_operator_client.testing import Delay, Echo, FakeOperator


@pytest.fixture
def cleanup(redis_admin: redis.Redis, sandai_operator_name: str) -> Iterator[None]:
    yield
    for key in redis_admin.scan_iter(match=f"*{sandai_operator_name}*"):
        redis_admin.delete(key)
    for tag, value in redis_admin.hscan_iter("unacked"):  # the shared hash: only this test's entries
        if sandai_operator_name.encode() in value:
            redis_admin.hdel("unacked", tag)


def _timeout(redis_url: str, name: str) -> TaskTimeoutError:
    with create_client(name, "v1", broker_url=redis_url) as client:
        with pytest.raises(TaskTimeoutError) as info:
            client.sync([], {"text": "x"}, timeout=0.5)
    return info.value


def test_a_task_nobody_took_is_still_queued(redis_url: str, sandai_operator_name: str, cleanup: None) -> None:
    error = _timeout(redis_url, sandai_operator_name)
    queue = f"normal.{sandai_operator_name}.v1"
    assert (error.whereabouts, error.queue, error.queue_waiting) == ("queued", queue, 1)
    assert f"still queued (1 waiting in {queue}; no operator took it)" in str(error)


def test_a_task_an_operator_holds_is_taken(
    redis_url: str, sandai_operator_name: str, cleanup: None, redis_admin: redis.Redis
) -> None:
    operator = FakeOperator(sandai_operator_name, broker_url=redis_url, behaviour=lambda p: Delay(3, Echo()))
    with operator.in_thread():
        error = _timeout(redis_url, sandai_operator_name)
    assert error.whereabouts == "taken" and "taken by an operator, no result yet" in str(error)


def test_a_task_taken_without_a_trace_says_so(redis_url: str, sandai_operator_name: str, cleanup: None) -> None:
    # an operator that pops without noting the message in kombu's unacked hash (one that died mid-pop)
    operator = FakeOperator(
        sandai_operator_name, broker_url=redis_url, behaviour=lambda p: Delay(3, Echo()), track_unacked=False
    )
    with operator.in_thread():
        error = _timeout(redis_url, sandai_operator_name)
    assert error.whereabouts == "no trace" and "no trace of it" in str(error)


def test_the_error_keeps_its_fields_through_pickling() -> None:
    import pickle

    error = TaskTimeoutError("t", 1.5, "queued", "normal.x.v1", 3)
    again = pickle.loads(pickle.dumps(error))
    assert (again.whereabouts, again.queue, again.queue_waiting, str(again)) == ("queued", "normal.x.v1", 3, str(error))
    assert str(TaskTimeoutError("t", 2)) == "Task t timed out after 2 seconds"  # the seed's message, unchanged
