"""The compatibility matrix (``make test-compat``): real operators of the oldest and newest SDK release
served through every server and broker kind, the client's public API checked against each, and the
README's "Compatibility" table required to be exactly what this run found.

``SANDAI_UPDATE_COMPAT_TABLE=1 make test-compat`` writes the table into the README instead of comparing.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional

import pytest
from conftest import ROOT, delete_amqp_queues

from sandai_operator_client import (
    OperatorClient,
    OperatorError,
    TaskCancelledError,
    TaskDeadlineExceededError,
    TaskExecutionError,
    TaskTimeoutError,
    create_client,
)
from sandai_operator_client.protocol.operator import parse_task_result

from .conftest import SDK_RELEASES, CompatServer, server_kinds, start_operator

pytestmark = [pytest.mark.compat, pytest.mark.sdk]

CHECKS = ("json tasks", "msgpack tasks", "typed errors", "deadline", "cancel", "desc", "batch")
REDIS_BROKER = "Redis (tasks db 0, results db 1)"
AMQP_BROKER = "RabbitMQ (results: Redis)"
README = ROOT / "README.md"
START, END = "<!-- compat-table:start -->", "<!-- compat-table:end -->"


class Row(NamedTuple):
    sdk: str
    broker: str
    server: str


FOUND: Dict[Row, Dict[str, str]] = {}
"""What each row of the matrix found: check -> ``yes`` or ``no: why``."""


def expected_gaps(sdk: str, broker: str) -> Dict[str, str]:
    """What an SDK release cannot do, whatever the client: checks expected to say ``no``."""
    if sdk == "0.4.0" and broker == AMQP_BROKER:
        why = "the operator does not start on RabbitMQ (it opens its cancel-key Redis client on the broker URL)"
        return dict.fromkeys(CHECKS, why)
    if sdk == "0.4.0":
        return {"msgpack tasks": "the operator accepts json task messages only"}
    return {}


def _outcome(check: Callable[[], Optional[str]]) -> str:
    try:
        problem = check()
    except OperatorError as exc:
        problem = f"{type(exc).__name__}: {exc}"
    return "yes" if problem is None else f"no: {problem}"


def run_row(row: Row, broker_url: str, result_backend: str, tmp: Path) -> Dict[str, str]:
    try:
        operator = start_operator(row.sdk, broker_url, result_backend, tmp)
    except pytest.fail.Exception as exc:
        return dict.fromkeys(CHECKS, f"no: {exc}")
    found: Dict[str, str] = {}
    try:
        client = create_client(
            operator.name,
            "v1",
            broker_url=broker_url,
            result_backend=result_backend,
            timeout=30,
            task_serializer="json",
        )
        msgpack_client = create_client(
            operator.name,
            "v1",
            broker_url=broker_url,
            result_backend=result_backend,
            timeout=30,
            task_serializer="msgpack",
        )
        with client, msgpack_client:
            for name, check in _checks(client, msgpack_client).items():
                found[name] = _outcome(check)
    finally:
        operator.stop()
        if broker_url.startswith("amqp"):
            delete_amqp_queues(operator.name)
    return found


def _checks(client: OperatorClient, msgpack_client: OperatorClient) -> Dict[str, Callable[[], Optional[str]]]:
    def echo(on: OperatorClient, timeout: float) -> Callable[[], Optional[str]]:
        def check() -> Optional[str]:
            try:
                results = on.sync([], {"text": "compat"}, timeout=timeout)[1]
            except TaskTimeoutError:
                return "never answered"
            return None if results == {"echo": "compat", "n_artifacts": 0} else f"answered {results!r}"

        return check

    def typed_errors() -> Optional[str]:
        try:
            client.sync([], {"text": "x", "fail": True})
        except TaskExecutionError as exc:
            return None if (exc.error_type, exc.error_message) == ("EchoFailure", "asked to fail") else repr(exc)
        return "a failing task succeeded"

    def deadline() -> Optional[str]:
        handle = client.async_call([], {}, timeout=1e-6)  # the deadline has passed when the task arrives
        try:
            parse_task_result(handle.id, handle.get(timeout=30))
        except TaskDeadlineExceededError as exc:
            return None if exc.current_time > exc.deadline > 0 else f"details: {exc!r}"
        return "an expired task ran"

    def cancel() -> Optional[str]:
        key = f"compat-{uuid.uuid4().hex[:8]}"
        client.cancel(key, ttl=120)
        try:
            client.sync([], {}, cancel_key=key)
        except TaskCancelledError as exc:
            return None if exc.cancel_key == key else f"cancel_key {exc.cancel_key!r}"
        return "the task ran"

    def desc() -> Optional[str]:
        title = client.desc["options_schema"]["title"]
        return None if title == "EchoOptions" else f"options_schema title {title!r}"

    def batch() -> Optional[str]:
        results = client.batch_sync_detailed([([], {"text": str(i)}) for i in range(4)])
        echoed = [r.results.get("echo") for r in results]
        return None if echoed == ["0", "1", "2", "3"] else f"echoed {echoed}"

    return {
        "json tasks": echo(client, 30),
        "msgpack tasks": echo(msgpack_client, 3),
        "typed errors": typed_errors,
        "deadline": deadline,
        "cancel": cancel,
        "desc": desc,
        "batch": batch,
    }


def _assert_row(row: Row, found: Dict[str, str]) -> None:
    FOUND[row] = found
    gaps = expected_gaps(row.sdk, row.broker)
    wrong = {check: outcome for check, outcome in found.items() if (check in gaps) != outcome.startswith("no")}
    assert not wrong, f"{row}: {wrong}"


@pytest.mark.parametrize("sdk", SDK_RELEASES)
def test_redis_broker(sdk: str, compat_server: CompatServer, tmp_path: Path) -> None:
    row = Row(sdk, REDIS_BROKER, compat_server.label)
    _assert_row(row, run_row(row, compat_server.url_for(0), compat_server.url_for(1), tmp_path))


@pytest.mark.parametrize("sdk", SDK_RELEASES)
def test_rabbitmq_broker(sdk: str, amqp_url: str, tmp_path: Path) -> None:
    binary = server_kinds()["machine"].binary
    assert binary, "redis-server is not installed (make test installs it)"
    server = CompatServer(tmp_path, binary)
    server.start()
    try:
        row = Row(sdk, AMQP_BROKER, server.label)
        # no "//" vhost path: SDK 0.4.0 reads the broker URL's path as a Redis db number (and crashes on
        # ""); without a path kombu uses the default vhost "/" all the same
        broker_url = amqp_url[:-2] if amqp_url.endswith("//") else amqp_url
        _assert_row(row, run_row(row, broker_url, server.url_for(1), tmp_path))
    finally:
        server.stop()


def render_table(found: Dict[Row, Dict[str, str]]) -> str:
    """The README's table: one row per SDK release, broker and server, ``yes`` or ``no`` per check, and a
    note per ``no`` saying why."""
    lines = ["| SDK | broker | server | " + " | ".join(CHECKS) + " |", "|---|---|---|" + "---|" * len(CHECKS)]
    notes: List[str] = []
    for row in sorted(found):
        cells = ["yes" if found[row][check] == "yes" else "no" for check in CHECKS]
        lines.append(f"| {row.sdk} | {row.broker} | {row.server} | " + " | ".join(cells) + " |")
        for why in dict.fromkeys(expected_gaps(row.sdk, row.broker).values()):
            note = f"* SDK {row.sdk}, {row.broker}: {why}."
            if note not in notes:
                notes.append(note)
    return "\n".join([*lines, "", *notes])


def test_the_readme_table_is_what_this_run_found() -> None:
    rows = len(SDK_RELEASES) * (len(server_kinds()) + 1)
    assert len(FOUND) == rows, f"the matrix ran {len(FOUND)} of its {rows} rows: run all of it (make test-compat)"
    table = render_table(FOUND)
    text = README.read_text()
    before, rest = text.split(START, 1)
    current, after = rest.split(END, 1)
    if os.environ.get("SANDAI_UPDATE_COMPAT_TABLE"):
        README.write_text(f"{before}{START}\n{table}\n{END}{after}")
        return
    assert current.strip() == table.strip(), (
        "README's Compatibility table differs from this run; SANDAI_UPDATE_COMPAT_TABLE=1 make test-compat "
        f"rewrites it. This run:\n{table}"
    )
