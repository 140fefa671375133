"""Spans, checked with the OpenTelemetry SDK's in-memory exporter: one CLIENT span per sync()/get() that
covers the wait, the task's PRODUCER span inside it, ERROR status on failure, upstream 0.6.x's switches."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from sandai_operator_client import OperatorClient, TaskExecutionError, TaskTimeoutError
from sandai_operator_client._core import tracing
from sandai_operator_client.testing import FakeOperator


def _named(exporter: Any, name: str) -> Any:
    spans = [s for s in exporter.get_finished_spans() if s.name == name]
    assert len(spans) == 1, [s.name for s in exporter.get_finished_spans()]
    return spans[0]


def test_a_sync_is_one_client_span_covering_the_wait(
    operator_client: OperatorClient, fake_operator: FakeOperator, span_exporter: Any
) -> None:
    with trace.use_span(trace.get_tracer("test").start_span("caller"), end_on_exit=True) as caller:
        operator_client.sync([], {"text": "traced", "sleep": 0.2})
    call = _named(span_exporter, "sandai.operator.sync")
    submit = _named(span_exporter, "sandai.operator.submit")
    task_id = fake_operator.received[-1]["_task_id"]
    assert call.kind == SpanKind.CLIENT and call.parent.span_id == caller.get_span_context().span_id
    assert submit.kind == SpanKind.PRODUCER and submit.parent.span_id == call.context.span_id
    assert call.end_time - call.start_time >= 0.2e9  # the operator's delay is inside the span
    assert call.status.status_code == StatusCode.UNSET
    expected = {
        "messaging.system": "celery",
        "messaging.operation.name": "sync",
        "messaging.destination.name": f"normal.{fake_operator.name}.v1",
        "messaging.message.id": task_id,
    }
    assert {key: call.attributes.get(key) for key in expected} == expected


@pytest.mark.parametrize("options, error", [({"fail": True}, TaskExecutionError), ({"sleep": 3}, TaskTimeoutError)])
def test_a_failed_call_has_error_status_and_the_exception(
    operator_client: OperatorClient, span_exporter: Any, options: Any, error: type
) -> None:
    with trace.use_span(trace.get_tracer("test").start_span("caller"), end_on_exit=True):
        with pytest.raises(error):
            operator_client.sync([], options, timeout=1)
    call = _named(span_exporter, "sandai.operator.sync")
    assert call.status.status_code == StatusCode.ERROR
    kinds = [e.attributes["exception.type"] for e in call.events if e.name == "exception"]
    assert [kind.rsplit(".", 1)[-1] for kind in kinds] == [error.__name__]


def test_get_is_a_span_too(operator_client: OperatorClient, span_exporter: Any) -> None:
    handle = operator_client.async_call([], {"text": "later"})
    with trace.use_span(trace.get_tracer("test").start_span("caller"), end_on_exit=True):
        handle.get(timeout=10)
    assert _named(span_exporter, "sandai.operator.get").attributes["messaging.message.id"] == handle.id


def test_the_switch_traces_calls_without_a_current_span(
    operator_client: OperatorClient, span_exporter: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator_client.sync([], {"text": "not traced"})
    assert span_exporter.get_finished_spans() == ()
    monkeypatch.setattr(tracing, "_enabled", True)  # SANDAI_OPERATOR_TRACING_ENABLED=true, as read
    operator_client.sync([], {"text": "traced"})
    call = _named(span_exporter, "sandai.operator.sync")
    assert (
        call.parent is None and _named(span_exporter, "sandai.operator.submit").parent.span_id == call.context.span_id
    )


def test_the_switch_without_an_exporter_says_so_once_and_the_client_works() -> None:
    code = (
        "import logging; logging.basicConfig(level=logging.WARNING)\n"
        "from sandai_operator_client import create_client\n"
        "create_client('x', 'v1', broker_url='redis://127.0.0.1:1/0').close()\n"
    )
    env = dict(os.environ, SANDAI_OPERATOR_TRACING_ENABLED="true", SANDAI_OPERATOR_OTLP_ENDPOINT="http://127.0.0.1:1")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "SANDAI_OPERATOR_TRACING_ENABLED is set but" in run.stderr and "is missing" in run.stderr, run.stderr
