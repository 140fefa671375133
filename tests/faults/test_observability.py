"""What a service can see: the library's log records (caplog) and client.statistics(), against real Redis."""

from __future__ import annotations

import logging
import threading
from typing import List

import anyio
import pytest

from sandai_operator_client import ClientStatistics, ResultDecodeError, create_async_client, create_client
from sandai_operator_client.testing import Delay, Echo, FakeOperator, RawRecord

from .conftest import PrivateRedis

pytestmark = pytest.mark.anyio


def test_a_restart_mid_wait_is_logged_and_counted(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sandai_operator_client")
    operator = FakeOperator(
        "logged", broker_url=private_redis.url, behaviour=lambda p: Delay(1.0, Echo()), reliable=True
    )
    with operator.in_thread(), create_client("logged", "v1", broker_url=private_redis.url) as client:
        restarter = threading.Timer(0.4, private_redis.restart)
        restarter.start()
        assert client.sync([], {"text": "through"}, timeout=30)[1]["echo"] == "through"
        restarter.join()
        figures = client.statistics()
    messages = [r.getMessage() for r in caplog.records if r.name == "sandai_operator_client"]
    assert any("result connection to" in m and "lost" in m for m in messages), messages
    assert any("back after" in m and "re-subscribed 1 channel(s)" in m for m in messages), messages
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "sandai_operator_client")
    assert figures.reconnects == 1 and figures.waiting_calls == 0 and figures.watched_channels == 0


def test_open_and_close_at_info_without_passwords(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sandai_operator_client")
    client = create_client("quiet", "v1", broker_url="redis://:s3cret@127.0.0.1:1/0")
    client.close()
    client.close()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(lines) == 2 and "opened" in lines[0] and "closed" in lines[1], lines
    assert "s3cret" not in caplog.text and "127.0.0.1:1" in lines[0]


def test_each_task_at_debug_and_nothing_below_warning_by_default(
    redis_url: str, sandai_operator_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeOperator(sandai_operator_name, broker_url=redis_url).in_thread():
        caplog.set_level(logging.WARNING, logger="sandai_operator_client")
        with create_client(sandai_operator_name, "v1", broker_url=redis_url) as client:
            client.sync([], {"text": "quiet"})
            assert [r for r in caplog.records if r.name == "sandai_operator_client"] == []
            caplog.set_level(logging.DEBUG, logger="sandai_operator_client")
            client.sync([], {"text": "loud"})
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("submitted to normal." in m for m in messages) and any("answered" in m for m in messages), messages
    assert any("to delete" in m for m in messages), messages


def test_an_undecodable_record_is_logged(
    redis_url: str, sandai_operator_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sandai_operator_client")
    operator = FakeOperator(sandai_operator_name, broker_url=redis_url, behaviour=lambda p: RawRecord(b"\x80garbage"))
    with operator.in_thread(), create_client(sandai_operator_name, "v1", broker_url=redis_url) as client:
        with pytest.raises(ResultDecodeError):
            client.sync([], {})
    assert any("cannot be decoded" in r.getMessage() for r in caplog.records), caplog.text


async def test_statistics_count_what_waits(redis_url: str, sandai_operator_name: str) -> None:
    operator = FakeOperator(sandai_operator_name, broker_url=redis_url, behaviour=lambda p: Delay(0.5, Echo()))
    seen: List[ClientStatistics] = []
    with operator.in_thread():
        async with create_async_client(sandai_operator_name, "v1", broker_url=redis_url) as client:
            assert client.statistics() == ClientStatistics(0, 0, 0, 0, 0, 0)
            async with anyio.create_task_group() as tg:
                for i in range(5):
                    tg.start_soon(client.sync, [], {"text": str(i)})
                while client.statistics().waiting_calls < 5:
                    await anyio.sleep(0.01)
                seen.append(client.statistics())
            seen.append(client.statistics())
    during, after = seen
    assert during.waiting_calls == 5 and during.watched_channels == 5 and during.connections >= 1
    assert after.waiting_calls == 0 and after.watched_channels == 0 and after.reconnects == 0
