"""cancel(), results as they complete, queue depth, tracing, the CLI and the conformance run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from contextlib import aclosing
from pathlib import Path
from typing import Any, List

import pytest
import redis
from conftest import SdkOperator

from sandai_operator_client import (
    AsyncOperatorClient,
    OperatorClient,
    TaskCancelledError,
    TaskTimeoutError,
    create_client,
)
from sandai_operator_client.cli import main as cli_main
from sandai_operator_client.testing import Crash, Delay, Echo, FakeOperator
from sandai_operator_client.testing.conformance import run_conformance

pytestmark = pytest.mark.anyio


# ---------------------------------------------------------------------------- cancel
def test_cancel_with_fake(
    operator_client: OperatorClient, fake_operator: FakeOperator, redis_admin: redis.Redis
) -> None:
    key = f"ck-{uuid.uuid4().hex}"
    operator_client.cancel(key, ttl=30)
    try:
        assert 0 < redis_admin.ttl(key) <= 30
        with pytest.raises(TaskCancelledError):
            operator_client.sync([], {}, cancel_key=key)
        assert operator_client.sync([], {"text": "other"}, cancel_key=f"{key}-not-set")[1]["echo"] == "other"
    finally:
        redis_admin.delete(key)


def test_cancel_sets_the_key_on_the_backend_and_on_another_broker_database(redis_url: str, unique_name: str) -> None:
    # SDK <= 0.4.0 operators look for the key in the broker's database, later ones in the backend's
    base = redis_url.rsplit("/", 1)[0]
    key = f"ck-{uuid.uuid4().hex}"
    admins = [redis.Redis.from_url(f"{base}/{db}") for db in (0, 1)]
    try:
        with create_client(unique_name, "v1", broker_url=f"{base}/0", result_backend=f"{base}/1") as client:
            client.cancel(key, ttl=30)
        assert [0 < admin.ttl(key) <= 30 for admin in admins] == [True, True]
        for admin in admins:
            admin.delete(key)
        with create_client(unique_name, "v1", broker_url=f"{base}/1") as client:  # one database: one key
            client.cancel(key, ttl=30)
        assert [admin.exists(key) for admin in admins] == [0, 1]
    finally:
        for admin in admins:
            admin.delete(key)
            admin.close()


@pytest.mark.sdk
def test_cancel_with_real_operator(sdk_operator: SdkOperator, redis_admin: redis.Redis) -> None:
    key = f"ck-{uuid.uuid4().hex}"
    with create_client(sdk_operator.name, "v1", broker_url=sdk_operator.broker_url, timeout=60) as client:
        # a slow task keeps the operator busy while the tagged ones wait in the queue; cancel them there
        slow = client.async_call([], {"sleep": 1.5, "text": "slow"})
        tagged = client.batch_submit([([], {"text": str(i)}) for i in range(3)], cancel_key=key)
        client.cancel(key, ttl=60)
        try:
            results = client.batch_collect(tagged, timeout=60)
            assert all(isinstance(r.error, TaskCancelledError) for r in results)
            assert slow.get(timeout=60)["results"]["echo"] == "slow"
        finally:
            redis_admin.delete(key)


# ---------------------------------------------------------------------------- as completed
def test_as_completed_sync(operator_client: OperatorClient, fake_operator: FakeOperator) -> None:
    fake_operator.behaviour = lambda p: Delay(p["options"]["delay"], Echo()) if p["options"]["delay"] >= 0 else Crash()
    delays = [0.6, 0.1, 0.3, -1, 0.0]
    handles = [operator_client.async_call([], {"text": str(i), "delay": d}) for i, d in enumerate(delays)]
    started = time.monotonic()
    results = list(operator_client.as_completed(handles, timeout=2))
    assert [r.index for r in results] == [4, 1, 2, 0, 3]
    assert isinstance(results[-1].error, TaskTimeoutError) and results[0].results["echo"] == "4"
    assert time.monotonic() - started < 6
    ordered = list(
        operator_client.batch_iter(
            [([], {"text": "a", "delay": 0.2}), ([], {"text": "b", "delay": 0}), ([], "bad")], timeout=10
        )
    )
    assert [r.index for r in ordered] == [2, 1, 0] and not ordered[0].submitted


async def test_as_completed_async(async_operator_client: AsyncOperatorClient, fake_operator: FakeOperator) -> None:
    fake_operator.behaviour = lambda p: Delay(p["options"]["delay"], Echo())
    submitted = await async_operator_client.batch_submit(
        [([], {"text": str(i), "delay": d}) for i, d in enumerate([0.3, 0.0, 0.15])]
    )
    seen: List[int] = []
    async with aclosing(async_operator_client.as_completed(submitted, timeout=10)) as results:  # type: ignore[type-var]
        async for result in results:
            seen.append(result.index)
    assert seen == [1, 2, 0]
    seen = [
        r.index
        async for r in async_operator_client.batch_iter(
            [([], {"text": "x", "delay": 0.2}), ([], {"text": "y", "delay": 0})]
        )
    ]
    assert seen == [1, 0]
    # leaving early releases the subscriptions
    async with aclosing(async_operator_client.as_completed(submitted, timeout=10)) as results:  # type: ignore[type-var]
        async for _ in results:
            break
    assert async_operator_client.statistics().watched_channels == 0


# ---------------------------------------------------------------------------- queue depth
def test_queue_depth_redis(redis_url: str, unique_name: str, redis_admin: redis.Redis) -> None:
    with create_client(unique_name, "v1", broker_url=redis_url) as client:
        client.batch_submit([([], {})] * 3, priority="low")
        client.async_call([], {}, priority="high")
        assert client.queue_depth() == {"high": 1, "normal": 0, "low": 3, "very_low": 0}
    for key in redis_admin.scan_iter(match=f"*{unique_name}*"):
        redis_admin.delete(key)


# ---------------------------------------------------------------------------- tracing
def test_tracing_context_reaches_the_payload(
    operator_client: OperatorClient, fake_operator: FakeOperator, span_exporter: Any
) -> None:
    from opentelemetry import trace

    tracer = trace.get_tracer("test")
    operator_client.sync([], {"text": "untraced"})
    assert "_tracing" not in fake_operator.received[-1]
    with trace.use_span(tracer.start_span("caller"), end_on_exit=True) as caller:
        operator_client.sync([], {"text": "traced"})
    carrier = fake_operator.received[-1]["_tracing"]
    trace_id = format(caller.get_span_context().trace_id, "032x")
    assert carrier["traceparent"].split("-")[1] == trace_id
    spans = [s for s in span_exporter.get_finished_spans() if s.name == "sandai.operator.submit"]
    assert spans and spans[-1].attributes["messaging.message.id"] == fake_operator.received[-1]["_task_id"]


# ---------------------------------------------------------------------------- CLI
def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandai_operator_client", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def test_cli_end_to_end(fake_operator: FakeOperator, tmp_path: Path) -> None:
    common = ["--broker-url", fake_operator.broker_url]
    name = [fake_operator.name, "v1"]
    out = _cli(*common, "call", *name, "--artifact", "s3://b/in.mp4#video", "--options", '{"text": "cli"}')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "artifacts": [{"uri": "s3://b/in.mp4", "slot": "video"}],
        "results": {"echo": "cli", "n_artifacts": 1},
    }
    assert _cli(*common, "call", *name, "--options", '{"fail": true}').returncode == 1
    as_json = _cli(*common, "--task-serializer", "json", "call", *name, "--options", '{"text": "j"}')
    assert json.loads(as_json.stdout)["results"]["echo"] == "j", as_json.stderr
    assert _cli(*common, "call", *name, "--options", "[1]").returncode == 2
    task_id = _cli(*common, "submit", *name, "--options", '{"text": "later"}').stdout.strip()
    got = _cli(*common, "get", *name, task_id, "--timeout", "30")
    assert json.loads(got.stdout)["results"]["echo"] == "later"
    assert json.loads(_cli(*common, "desc", *name).stdout)["doc"].startswith("Fake operator")
    assert json.loads(_cli(*common, "probe", *name).stdout)["response_ok"] is True
    assert json.loads(_cli(*common, "queues", *name).stdout)["high"]["queue"] == f"high.{fake_operator.name}.v1"
    assert _cli(*common, "cancel", *name, f"ck-{uuid.uuid4().hex}", "--ttl", "5").returncode == 0

    lines = [json.dumps({"options": {"text": str(i), "sleep": 0.05 * (5 - i)}}) for i in range(5)]
    lines[2] = json.dumps({"options": {"text": "2", "fail": True}})
    batch_file = tmp_path / "tasks.jsonl"
    batch_file.write_text("\n".join(lines) + "\n")
    ordered = _cli(*common, "batch", *name, str(batch_file), "--ordered", "--progress", "always")
    assert ordered.returncode == 1  # one task failed
    rows = [json.loads(line) for line in ordered.stdout.splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2, 3, 4] and [r["success"] for r in rows].count(False) == 1
    assert "5/5" in ordered.stderr and "/s" in ordered.stderr and "ETA" in ordered.stderr
    unordered = _cli(*common, "batch", *name, "-", "--progress", "never", stdin="\n".join(lines))
    assert sorted(json.loads(line)["index"] for line in unordered.stdout.splitlines()) == [0, 1, 2, 3, 4]
    assert unordered.stderr == ""


def test_cli_exit_codes_without_services() -> None:
    assert cli_main(["--broker-url", "redis://127.0.0.1:1/0", "call", "x", "v1"]) == 3
    fake_name = f"cli-{uuid.uuid4().hex[:8]}"
    assert cli_main(["call", fake_name, "v1", "--timeout", "0.5"]) == 4  # nobody consumes: timeout


# ---------------------------------------------------------------------------- conformance
@pytest.mark.sdk
def test_conformance_passes_against_the_real_operator(sdk_operator: SdkOperator) -> None:
    with create_client(sdk_operator.name, "v1", broker_url=sdk_operator.broker_url) as client:
        report = run_conformance(client, timeout=60)
    assert report.passed, report.render()
    assert len(report.checks) == 11


@pytest.mark.parametrize(
    ("broken", "failing"),
    [
        ({"honour_deadline": False}, "deadline passed"),
        ({"honour_cancel_key": False}, "cancel key set"),
        ({"serve_desc": False}, "desc answers"),
    ],
)
def test_conformance_fails_against_broken_operators(
    redis_url: str, unique_name: str, broken: Any, failing: str
) -> None:
    with (
        FakeOperator(unique_name, broker_url=redis_url, **broken).in_thread(),
        create_client(unique_name, "v1", broker_url=redis_url) as client,
    ):
        report = run_conformance(client, timeout=1.5)
    assert not report.passed
    failed = [c for c in report.checks if not c.passed]
    assert any(c.name.startswith(failing) for c in failed), report.render()
    assert all(c.detail for c in failed)


def test_conformance_against_nobody_stops_at_the_first_silence_and_withdraws(
    redis_url: str, unique_name: str, redis_admin: redis.Redis
) -> None:
    # before: 11 checks each waited out their timeout (33 s at --timeout 3) and left 11 tasks queued
    try:
        with create_client(unique_name, "v1", broker_url=redis_url) as client:
            report = run_conformance(client, timeout=1)
        unanswered = [c for c in report.checks if c.detail.startswith("no answer")]
        skipped = [c for c in report.checks if c.detail.startswith("skipped")]
        assert len(report.checks) == 11 and len(unanswered) == 1 and len(skipped) == 10, report.render()
        assert report.unanswered and report.withdrawn == 1
        queues = [f"{p}.{unique_name}.v1" for p in ("high", "normal", "low", "very_low")]
        assert sum(redis_admin.llen(q) for q in queues) == 0
        out = _cli("--broker-url", redis_url, "conformance", unique_name, "v1", "--timeout", "0.5")
        assert out.returncode == 5 and "1/11" not in out.stdout and "withdrawn" in out.stdout, out.stdout
    finally:
        for key in redis_admin.scan_iter(match=f"*{unique_name}*"):
            redis_admin.delete(key)


def test_conformance_cli_against_fake(fake_operator: FakeOperator) -> None:
    out = _cli("--broker-url", fake_operator.broker_url, "conformance", fake_operator.name, "v1", "--timeout", "10")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "11/11 checks passed" in out.stdout


def test_garbage_record_is_a_conformance_failure(redis_url: str, unique_name: str) -> None:
    from sandai_operator_client.testing import RawRecord

    with (
        FakeOperator(unique_name, broker_url=redis_url, behaviour=lambda p: RawRecord(b"\x80\x04garbage")).in_thread(),
        create_client(unique_name, "v1", broker_url=redis_url) as client,
    ):
        report = run_conformance(client, timeout=3)
    detail = next(c for c in report.checks if c.name.startswith("task answers")).detail
    assert "pickle" in detail
