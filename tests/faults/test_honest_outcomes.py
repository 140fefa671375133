"""A call reports what happened to its task: not published, maybe published, or published without a
result to wait for. Real ACL users on a private Redis; a black-holing proxy for writes whose fate is open."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import anyio
import pytest
import redis

from sandai_operator_client import (
    ConnectionPolicy,
    OperatorConnectionError,
    PublishOutcomeUnknownError,
    ResultUnavailableError,
    create_async_client,
)
from sandai_operator_client.testing import FakeOperator

from .conftest import PrivateRedis, operator_process
from .proxy import TcpProxy, proxy_url

pytestmark = pytest.mark.anyio

ACL_USERS = {
    # may not use pub/sub at all
    "nopubsub": "on >pw ~* &* +@all -subscribe -psubscribe -ssubscribe -unsubscribe -punsubscribe",
    # may use pub/sub, but not the result channels
    "nochannels": "on >pw ~* resetchannels &other:* +@all",
}


@pytest.fixture
def acl_redis(private_redis: PrivateRedis) -> Iterator[PrivateRedis]:
    admin = redis.Redis(port=private_redis.port)
    for user, rules in ACL_USERS.items():
        admin.execute_command("ACL", "SETUSER", user, *rules.split())
    admin.close()
    yield private_redis


def _user_url(server: PrivateRedis, user: str, db: int = 0) -> str:
    return f"redis://{user}:pw@127.0.0.1:{server.port}/{db}"


async def _received(operator: FakeOperator, count: int) -> list[Any]:
    with anyio.fail_after(10):
        while len(operator.received) < count:
            await anyio.sleep(0.02)
    return operator.received


@pytest.mark.parametrize("user", sorted(ACL_USERS))
async def test_a_refused_subscription_is_not_reported_as_a_failed_publish(acl_redis: PrivateRedis, user: str) -> None:
    # broker and backend on the same database: the LPUSH rides with the SUBSCRIBE (RESP3), and goes
    # through although the SUBSCRIBE is refused: the task is queued and runs, and the call says so
    operator = FakeOperator(f"acl-{user}", broker_url=acl_redis.url)
    with operator.in_thread():
        url = _user_url(acl_redis, user)
        async with create_async_client(operator.name, "v1", broker_url=url, timeout=20) as client:
            with pytest.raises(ResultUnavailableError) as info:
                await client.sync([], {"text": "one"})
            assert "NOPERM" in str(info.value) and info.value.task_id
            received = await _received(operator, 1)
            assert received[0]["options"] == {"text": "one"}

            results = await client.batch_sync_detailed([([], {"text": str(i)}) for i in range(3)], timeout=20)
            assert [r.submitted for r in results] == [True] * 3
            assert all(isinstance(r.error, ResultUnavailableError) and r.task_id for r in results)
            await _received(operator, 4)
            assert client.statistics().watched_channels == 0


async def test_a_refused_subscription_before_publishing_publishes_nothing(acl_redis: PrivateRedis) -> None:
    # broker on another database: the call subscribes first and publishes only once subscribed, so a
    # refusal means nothing went out; a batch publishes while subscribing, so its tasks did go out
    operator = FakeOperator("acl-split", broker_url=f"{acl_redis.url[:-2]}/1", result_backend=acl_redis.url)
    with operator.in_thread():
        async with create_async_client(
            operator.name,
            "v1",
            broker_url=_user_url(acl_redis, "nochannels", 1),
            result_backend=_user_url(acl_redis, "nochannels", 0),
            timeout=20,
        ) as client:
            with pytest.raises(OperatorConnectionError) as info:
                await client.sync([], {"text": "never"})
            assert not isinstance(info.value, ResultUnavailableError) and "NOPERM" in str(info.value)
            await anyio.sleep(0.3)
            assert operator.received == []

            results = await client.batch_sync_detailed([([], {"text": str(i)}) for i in range(3)], timeout=20)
            assert [r.submitted for r in results] == [True] * 3
            assert all(isinstance(r.error, ResultUnavailableError) for r in results)
            await _received(operator, 3)


async def test_a_publish_cut_by_a_silent_network_is_unknown_not_never_sent(private_redis: PrivateRedis) -> None:
    # the path to Redis stops answering while the LPUSH is in flight: the client cannot know whether it
    # will arrive (here it does, when the partition heals), so it must not say it never reached the queue
    proxy = TcpProxy(("127.0.0.1", private_redis.port))
    operator = FakeOperator("silent", broker_url=private_redis.url)
    try:
        with operator.in_thread():
            async with create_async_client(
                "silent",
                "v1",
                broker_url=proxy_url(proxy, 0),
                result_backend=private_redis.url,
                timeout=20,
                connection=ConnectionPolicy(io_timeout=1.0),
            ) as client:
                await client.async_call([], {"text": "warm"})  # connections made
                await _received(operator, 1)
                proxy.black_hole(new_connections=False)  # the settling connection gets through
                started = time.monotonic()
                with pytest.raises(PublishOutcomeUnknownError) as info:
                    await client.async_call([], {"text": "held"})
                assert time.monotonic() - started < 10
                assert info.value.task_id and "may" in str(info.value)
                proxy.heal()  # the held LPUSH arrives: the task runs, as "unknown" allowed
                received = await _received(operator, 2)
                assert received[1]["options"] == {"text": "held"}
    finally:
        proxy.close()


def test_a_sigint_storm_never_yields_a_foreign_result(redis_url: str, sandai_operator_name: str) -> None:
    # SIGINT every 1-20 ms during back-to-back blocking sync() calls (Jupyter's "interrupt kernel"
    # sends exactly this): every call returns its own result, a typed error or KeyboardInterrupt, and
    # nothing hangs (the blocking client drives its own asyncio loop: one run covers it)

    with operator_process(sandai_operator_name, redis_url):
        child = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("sigint_storm_child.py")),
                sandai_operator_name,
                redis_url,
                "6",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            signals = 0
            end = time.monotonic() + 6
            while time.monotonic() < end:
                child.send_signal(signal.SIGINT)
                signals += 1
                time.sleep(random.uniform(0.001, 0.02))
            out, _ = child.communicate(timeout=60)
        finally:
            child.kill()
    counts = json.loads(out.strip().splitlines()[-1])
    untyped = {k: v for k, v in counts.items() if k.startswith("untyped")}
    assert counts.get("foreign", 0) == 0 and counts["last own"] == 1 and not untyped, counts
    assert counts.get("interrupted", 0) > 50 and counts.get("own", 0) > 50, counts  # the storm hit calls
    assert child.returncode == 0
