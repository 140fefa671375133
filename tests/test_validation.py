"""What the real operator would refuse is refused before anything is sent: keys, nesting, timeouts."""

from __future__ import annotations

from typing import Any, Dict, List

import msgpack
import pytest
import redis

from sandai_operator_client import InvalidTaskInputError, OperatorClient, create_client
from sandai_operator_client.config import check_timeout
from sandai_operator_client.protocol.celery import decode_task_body
from sandai_operator_client.protocol.operator import MAX_NESTING, check_string_keys
from sandai_operator_client.protocol.serialization import DecodeError
from sandai_operator_client.testing import FakeOperator


def _nested(depth: int) -> Dict[str, Any]:
    value: Dict[str, Any] = {}
    for _ in range(depth):
        value = {"x": value}
    return value


BAD_OPTIONS: List[Any] = [
    {"a": {1: "int key inside"}},
    {"a": [{"b": {(1, 2): "tuple key"}}]},
    {"a": {b"k": "bytes key"}},
    {"a": {None: 1}},
    _nested(MAX_NESTING + 5),
]


@pytest.mark.parametrize("options", BAD_OPTIONS)
def test_keys_that_are_not_strings_and_deep_nesting_are_refused(options: Any) -> None:
    with pytest.raises(InvalidTaskInputError):
        check_string_keys(options, "options")


def test_a_reference_cycle_is_refused_not_walked_forever() -> None:
    loop: List[Any] = []
    loop.append(loop)
    loop.append(loop)
    with pytest.raises(InvalidTaskInputError, match="cycle"):
        check_string_keys({"a": loop}, "options")


def test_shared_values_and_deep_but_legal_nesting_pass() -> None:
    shared = {"k": [1, 2]}
    check_string_keys({"a": shared, "b": shared, "c": [shared, (shared,)]}, "options")
    check_string_keys(_nested(MAX_NESTING - 1), "options")


@pytest.mark.parametrize("value", [0, -1, -0.5, float("nan"), "3", b"3", None, True, [1]])
def test_a_task_timeout_must_be_a_positive_number(value: Any) -> None:
    with pytest.raises(InvalidTaskInputError):
        check_timeout(value)


def test_a_wait_may_be_zero_but_not_negative() -> None:
    assert check_timeout(0, allow_zero=True) == 0.0
    assert check_timeout(2.5) == 2.5 and check_timeout(3) == 3.0
    with pytest.raises(InvalidTaskInputError):
        check_timeout(-1, allow_zero=True)


def test_the_operator_side_decoder_is_as_strict_as_kombus() -> None:
    # the FakeOperator decodes with this: it must refuse what the real SDK operator refuses
    body = msgpack.packb([[], {"options": {"a": {1: "x"}}}, {}], use_bin_type=True)
    with pytest.raises(DecodeError):
        decode_task_body(body, "application/x-msgpack")


def _queued(redis_admin: redis.Redis, name: str) -> int:
    return sum(int(redis_admin.llen(f"{p}.{name}.v1")) for p in ("high", "normal", "low", "very_low"))


@pytest.mark.parametrize("timeout", [0, -5, "3"])
def test_bad_timeouts_send_nothing(
    operator_client: OperatorClient, fake_operator: FakeOperator, redis_admin: redis.Redis, timeout: Any
) -> None:
    with pytest.raises(InvalidTaskInputError):
        operator_client.sync([], {}, timeout=timeout)
    with pytest.raises(InvalidTaskInputError):
        operator_client.async_call([], {}, timeout=timeout)
    with pytest.raises(InvalidTaskInputError):
        operator_client.batch_sync_detailed([([], {})], timeout=timeout)
    assert fake_operator.received == [] and _queued(redis_admin, fake_operator.name) == 0
    handle = operator_client.async_call([], {})
    assert handle.get(timeout=30)["status"] == "success"
    if timeout != 0:  # 0 is a wait that looks once
        with pytest.raises(InvalidTaskInputError):
            handle.get(timeout=timeout)


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_one_bad_task_fails_alone_in_a_batch(
    fake_operator: FakeOperator, serializer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDAI_OPERATOR_CELERY_BROKER_URL", fake_operator.broker_url)
    monkeypatch.setenv("SANDAI_OPERATOR_CELERY_TASK_SERIALIZER", serializer)
    with create_client(fake_operator.name, "v1", timeout=30) as client:
        assert client.config.celery.task_serializer == serializer
        tasks: List[Any] = [
            ([], {"text": "a"}),
            ([], {"deep": _nested(5000)}),
            ([], {"k": {7: 1}}),
            ([], {"text": "b"}),
        ]
        results = client.batch_sync_detailed(tasks, timeout=30)
    assert [r.success for r in results] == [True, False, False, True]
    assert all(isinstance(r.error, InvalidTaskInputError) and not r.submitted for r in results[1:3])
    assert [p["options"] for p in fake_operator.received] in (
        [{"text": "a"}, {"text": "b"}],
        [{"text": "b"}, {"text": "a"}],
    )
