"""The encoder against captures of real Celery and the seed client; the decoders against the real SDK."""

from __future__ import annotations

import base64
import datetime
import uuid
from decimal import Decimal
from typing import Any, Dict

import msgpack
import pytest
from conftest import load_fixture

from sandai_operator_client.errors import (
    TaskCancelledError,
    TaskDeadlineExceededError,
    TaskExecutionError,
)
from sandai_operator_client.protocol.celery import encode_task_message, operator_task_name
from sandai_operator_client.protocol.kombu_redis import RedisEnvelopeEncoder, encode_redis_envelope, priority_list_name
from sandai_operator_client.protocol.operator import (
    build_task_payload,
    envelope_from_record,
    parse_desc_result,
    parse_task_result,
)
from sandai_operator_client.protocol.results import decode_result_record
from sandai_operator_client.testing import assert_envelope_matches
from sandai_operator_client.testing.envelopes import comparable_envelope

CELERY = load_fixture("celery_send_task.json")
SEED = load_fixture("seed_client.json")
SDK = load_fixture("sdk_results.json")
SDK_0_4_0 = load_fixture("sdk_0_4_0_results.json")
CELERY_RESULTS = load_fixture("celery_results.json")


def _raw(entry: Dict[str, Any]) -> bytes:
    return entry["raw"].encode() if "raw" in entry else bytes.fromhex(entry["raw_hex"])


def _envelope(message: Any, queue: str) -> bytes:
    """The envelope as the publisher encodes it (templated), checked against the plain encoder."""
    plain = encode_redis_envelope(message, queue=queue, delivery_tag="t")
    encoder = RedisEnvelopeEncoder()
    assert encoder.encode(message, queue=queue, delivery_tag="t") == plain  # builds the template
    assert encoder.encode(message, queue=queue, delivery_tag="t") == plain  # uses it
    return plain


def _only(lists: Dict[str, Any]) -> tuple[str, str]:
    ((name, elements),) = lists.items()
    assert len(elements) == 1
    return name, elements[0]


@pytest.mark.parametrize("case", CELERY["cases"], ids=lambda c: c["name"])
def test_encoder_matches_celery_send_task(case: Dict[str, Any]) -> None:
    list_name, golden = _only(case["lists"])
    queue = case["queue"]
    assert list_name == priority_list_name(queue, case["priority"] or 0)
    decoded = comparable_envelope(golden, ignore=(), ignore_kwargs=())
    golden_props = decoded["properties"]
    # the fixture file sorts keys for readability; the raw element keeps the order Celery sent
    assert decoded["body"]["kwargs"] == case["kwargs"]
    message = encode_task_message(
        task_id=case["task_id"],
        task_name="sandai_operator.cap.v1.process_task",
        kwargs=decoded["body"]["kwargs"],
        serializer=case["serializer"],
        origin="gen1@host",
        reply_to="r",
        priority=golden_props["priority"],
    )
    ours = _envelope(message, queue)
    # the body bytes themselves must be identical, not just equal after decoding
    assert comparable_envelope(ours, ignore=())["body"] == comparable_envelope(golden, ignore=())["body"]
    import json

    assert base64.b64decode(json.loads(ours)["body"]) == base64.b64decode(json.loads(golden)["body"])
    assert_envelope_matches(ours, golden)


@pytest.mark.parametrize("case", [c for c in SEED["cases"] if c["name"] != "seed-desc"], ids=lambda c: c["name"])
def test_encoder_matches_seed_client(case: Dict[str, Any]) -> None:
    list_name, golden = _only(case["lists"])
    controls = case["controls"]
    priority = controls.get("priority", "normal")
    assert list_name == f"{priority}.{SEED['operator']}.v1"
    timeout = controls.get("timeout", case["default_timeout"])
    payload = build_task_payload(
        case["input_artifacts"],
        case["options"],
        deadline=case["sent_at"] + timeout,
        cancel_key=controls.get("cancel_key"),
        persistent_output=controls.get("persistent_output", False),
    )
    message = encode_task_message(
        task_id=case["task_id"],
        task_name=operator_task_name(SEED["operator"], "v1"),
        kwargs=payload,
        origin="gen1@host",
        reply_to="r",
    )
    ours = _envelope(message, list_name)
    assert_envelope_matches(ours, golden)
    golden_deadline = comparable_envelope(golden, ignore=(), ignore_kwargs=())["body"]["kwargs"]["deadline"]
    assert abs(golden_deadline - payload["deadline"]) < 5  # same meaning: sent_at + timeout


def test_desc_query_matches_seed_client() -> None:
    case = next(c for c in SEED["cases"] if c["name"] == "seed-desc")
    list_name, golden = _only(case["lists"])
    message = encode_task_message(
        task_id=case["task_id"],
        task_name=operator_task_name(SEED["operator"], "v1"),
        kwargs={"task_type": "desc"},
        origin="gen1@host",
        reply_to="r",
    )
    assert_envelope_matches(_envelope(message, list_name), golden)


def test_mismatch_names_the_field() -> None:
    golden = _only(CELERY["cases"][0]["lists"])[1]
    message = encode_task_message(
        task_id="x", task_name="other.task", kwargs=CELERY["cases"][0]["kwargs"], serializer="json", origin="o"
    )
    with pytest.raises(AssertionError, match=r"\.headers\.task"):
        assert_envelope_matches(_envelope(message, "q"), golden)


def _check_sdk_outcome(entry: Dict[str, Any], envelope: Any, error_details: Any) -> None:
    """What a captured record of ``entry["case"]`` must decode to (``error_details``: what an operator
    error keeps of its details; SDK 0.4.0 loses them)."""
    case, task_id = entry["case"], entry["task_id"]
    if case == "success":
        assert parse_task_result(task_id, envelope).to_legacy_tuple() == ([], {"echo": "hello", "n_artifacts": 0})
    elif case == "success-artifact":
        artifacts, results = parse_task_result(task_id, envelope).to_legacy_tuple()
        assert results == {"echo": "a", "n_artifacts": 1} and artifacts[0]["slot"] == "doc"
    elif case == "error":
        with pytest.raises(TaskExecutionError) as info:
            parse_task_result(task_id, envelope)
        assert (info.value.error_type, info.value.error_message) == ("EchoFailure", "asked to fail")
        assert info.value.error_details == error_details and info.value.task_id == task_id
    elif case == "deadline-exceeded":
        with pytest.raises(TaskDeadlineExceededError) as deadline_info:
            parse_task_result(task_id, envelope)
        assert deadline_info.value.deadline == pytest.approx(entry["payload"]["deadline"])
        assert deadline_info.value.current_time > deadline_info.value.deadline
    elif case == "cancelled":
        with pytest.raises(TaskCancelledError) as cancel_info:
            parse_task_result(task_id, envelope)
        assert cancel_info.value.cancel_key == entry["payload"]["cancel_key"]
    elif case == "desc":
        desc = parse_desc_result(task_id, envelope).to_dict()
        assert desc["doc"].startswith("Echo the text option back")
        assert desc["options_schema"]["title"] == "EchoOptions"
        assert desc["results_schema"]["required"] == ["echo", "n_artifacts"]
    else:  # pragma: no cover - a new capture case needs a new assertion
        pytest.fail(f"unchecked case {case}")


@pytest.mark.parametrize("entry", SDK["records"], ids=lambda e: e["name"])
def test_decode_every_sdk_record(entry: Dict[str, Any]) -> None:
    record = decode_result_record(_raw(entry))
    assert record.status == "SUCCESS" and record.ready and record.task_id == entry["task_id"]
    _check_sdk_outcome(entry, envelope_from_record(entry["task_id"], record), {"text": "x"})


def test_sdk_records_cover_both_serializers() -> None:
    seen = {(e["task_serializer"], e["result_serializer"]) for e in SDK["records"]}
    assert seen == {("json", "json"), ("json", "msgpack"), ("msgpack", "json"), ("msgpack", "msgpack")}


@pytest.mark.parametrize("entry", SDK_0_4_0["records"], ids=lambda e: e["name"])
def test_sdk_0_4_0_records_decode_to_the_same_outcomes(entry: Dict[str, Any]) -> None:
    # SDK <= 0.4.0 stores each error as a FAILURE of Exception("<error_type>: <message>"): read as the
    # modern error envelope, so a cancelled or expired task raises the same typed error as today
    record = decode_result_record(_raw(entry))
    envelope = envelope_from_record(entry["task_id"], record)
    if entry["case"] in ("error", "deadline-exceeded", "cancelled"):
        assert record.status == "FAILURE" and envelope["status"] == "error"
        assert envelope["error"]["error_details"]["legacy_failure_record"] is True
    _check_sdk_outcome(entry, envelope, {"legacy_failure_record": True})


@pytest.mark.parametrize(
    "message, expected",
    [
        ("EchoFailure: asked to fail", ("EchoFailure", "asked to fail", {})),
        ("ProcessingError: a: b\nsecond line", ("ProcessingError", "a: b\nsecond line", {})),
        (
            "TaskCancelledError: Task was cancelled via cancel_key: k: 1",
            ("TaskCancelledError", None, {"cancel_key": "k: 1"}),
        ),
        (
            "TaskDeadlineExceededError: Task deadline exceeded before processing: 1.5 < 2.5",
            ("TaskDeadlineExceededError", None, {"deadline": 1.5, "current_time": 2.5}),
        ),
        ("TaskDeadlineExceededError: something else", ("TaskDeadlineExceededError", "something else", {})),
        ("no prefix here", None),
        ("two words: no identifier", None),
        (": empty type", None),
    ],
)
def test_legacy_error_messages(message: str, expected: Any) -> None:
    from sandai_operator_client.protocol.operator import legacy_error_envelope

    envelope = legacy_error_envelope("t", message)
    if expected is None:
        assert envelope is None
        return
    error_type, error_message, details = expected
    error = envelope["error"]
    assert error["error_type"] == error_type
    assert error_message is None or error["error_message"] == error_message
    assert error["error_details"] == {"legacy_failure_record": True, **details}


def test_a_celery_failure_of_another_exception_type_is_not_read_as_legacy() -> None:
    from sandai_operator_client.protocol.results import ResultRecord

    record = ResultRecord(
        status="FAILURE",
        result={"exc_type": "RuntimeError", "exc_module": "builtins", "exc_message": ["EchoFailure: asked to fail"]},
        traceback=None,
        task_id="t",
    )
    with pytest.raises(TaskExecutionError) as info:
        envelope_from_record("t", record)
    assert info.value.error_type == "RuntimeError"


def _celery_record(name: str) -> Dict[str, Any]:
    return next(r for r in CELERY_RESULTS["records"] if r["name"] == name)


@pytest.mark.parametrize("name", ["failure-valueerror", "failure-runtime-msgpack"])
def test_celery_failure_records_raise_execution_error(name: str) -> None:
    entry = _celery_record(name)
    record = decode_result_record(_raw(entry))
    assert record.status == "FAILURE"
    with pytest.raises(TaskExecutionError) as info:
        envelope_from_record(entry["task_id"], record)
    expected = {
        "failure-valueerror": ("ValueError", "boom 42"),
        "failure-runtime-msgpack": ("RuntimeError", "EchoFailure: asked to fail"),
    }[name]
    assert (info.value.error_type, info.value.error_message) == expected
    assert info.value.error_details["exception_type"] == expected[0]


def test_revoked_record() -> None:
    entry = _celery_record("revoked")
    with pytest.raises(TaskExecutionError, match="revoked"):
        envelope_from_record(entry["task_id"], decode_result_record(_raw(entry)))


def test_kombu_type_wrappers_are_unwrapped() -> None:
    record = decode_result_record(_raw(_celery_record("success-type-wrappers")))
    assert record.result == {
        "when": datetime.datetime(2026, 11, 29, 1, 2, 3, 456789, tzinfo=datetime.timezone.utc),
        "day": datetime.date(2026, 11, 29),
        "price": Decimal("12.50"),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "text_bytes": b"plain",
        "bin_bytes": b"\xff\x00\x01",
    }


def test_msgpack_success_record() -> None:
    record = decode_result_record(_raw(_celery_record("success-msgpack")))
    assert record.result == {"status": "success", "artifacts": [], "results": {"x": 1}}
    assert msgpack.unpackb(_raw(_celery_record("success-msgpack")))["status"] == "SUCCESS"
