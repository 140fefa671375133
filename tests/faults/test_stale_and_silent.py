"""Connections the server dropped while idle heal without failing a call; every wait ends at its caller's
deadline when the network stops answering (a black-holing proxy), and the next call after it works."""

from __future__ import annotations

import gc
import socket
import time
from typing import Any, Awaitable, Callable, Iterator, List

import anyio
import pytest
import redis

from sandai_operator_client import (
    AsyncOperatorClient,
    ConnectionPolicy,
    OperatorConnectionError,
    PublishOutcomeUnknownError,
    TaskTimeoutError,
    create_async_client,
    create_client,
)
from sandai_operator_client.testing import Delay, Echo, FakeOperator

from .conftest import PrivateRedis
from .proxy import TcpProxy, proxy_url

pytestmark = pytest.mark.anyio


async def _every_kind_of_call(client: AsyncOperatorClient, tag: str) -> None:
    """sync, async_call + get and a batch: each must succeed (no error, its own result)."""
    assert (await client.sync([], {"text": f"{tag}-sync"}))[1]["echo"] == f"{tag}-sync"
    handle = await client.async_call([], {"text": f"{tag}-call"})
    assert (await handle.get(timeout=20))["results"]["echo"] == f"{tag}-call"
    batch = await client.batch_sync_detailed([([], {"text": f"{tag}-{i}"}) for i in range(3)], timeout=20)
    assert [r.results.get("echo") for r in batch] == [f"{tag}-{i}" for i in range(3)], batch


Breaker = Callable[[PrivateRedis, redis.Redis], Awaitable[None]]


async def _idle_timeout(server: PrivateRedis, admin: redis.Redis) -> None:
    admin.config_set("timeout", 1)  # the server closes connections idle for a second
    await anyio.sleep(2.5)
    admin.config_set("timeout", 0)


async def _client_kill(server: PrivateRedis, admin: redis.Redis) -> None:
    admin.client_kill_filter(_type="normal", skipme=True)
    admin.client_kill_filter(_type="pubsub", skipme=True)
    await anyio.sleep(0.5)  # idle longer than ConnectionPolicy.idle_check


async def _restart(server: PrivateRedis, admin: redis.Redis) -> None:
    await anyio.to_thread.run_sync(server.restart)


BREAKERS = {"idle-timeout": _idle_timeout, "client-kill": _client_kill, "restart": _restart}


@pytest.mark.parametrize("breaker", sorted(BREAKERS))
async def test_a_connection_dropped_between_calls_does_not_fail_the_next_call(
    private_redis: PrivateRedis, breaker: str
) -> None:
    operator = FakeOperator("stale", broker_url=private_redis.url, reliable=True)
    admin = redis.Redis(port=private_redis.port)
    with operator.in_thread():
        async with create_async_client("stale", "v1", broker_url=private_redis.url, timeout=20) as client:
            await _every_kind_of_call(client, "before")
            for round_no in range(2):
                await BREAKERS[breaker](private_redis, admin)
                admin = redis.Redis(port=private_redis.port)
                await _every_kind_of_call(client, f"after-{round_no}")


def test_the_blocking_client_heals_too(private_redis: PrivateRedis) -> None:
    operator = FakeOperator("stale-sync", broker_url=private_redis.url, reliable=True)
    admin = redis.Redis(port=private_redis.port)
    with operator.in_thread(), create_client("stale-sync", "v1", broker_url=private_redis.url, timeout=20) as client:
        client.sync([], {})
        admin.config_set("timeout", 1)
        time.sleep(2.5)
        admin.config_set("timeout", 0)
        assert client.sync([], {"text": "x"})[1]["echo"] == "x"
        assert client.async_call([], {"text": "y"}).get(timeout=20)["results"]["echo"] == "y"
        assert client.batch_sync_detailed([([], {"text": "z"})], timeout=20)[0].results["echo"] == "z"


async def test_a_server_at_maxclients_refuses_honestly_and_the_next_call_works(private_redis: PrivateRedis) -> None:
    # the refusal comes as an error reply on an accepted connection: found at connect (a PING), so the
    # call says it did not publish, and once slots are free the next call gets a fresh connection
    operator = FakeOperator("full", broker_url=private_redis.url)
    admin = redis.Redis(port=private_redis.port)
    with operator.in_thread():
        async with create_async_client("full", "v1", broker_url=private_redis.url, timeout=20) as client:
            admin.ping()
            admin.config_set("maxclients", int(admin.info("clients")["connected_clients"]))
            try:
                with pytest.raises(OperatorConnectionError) as info:
                    await client.sync([], {"text": "refused"})
                assert not isinstance(info.value, PublishOutcomeUnknownError)
                assert "max number of clients" in str(info.value)
            finally:
                admin.config_set("maxclients", 10000)
            await _every_kind_of_call(client, "after")
            assert all(p["options"]["text"] != "refused" for p in operator.received)


@pytest.fixture
def partitioned(private_redis: PrivateRedis) -> Iterator[TcpProxy]:
    proxy = TcpProxy(("127.0.0.1", private_redis.port))
    try:
        yield proxy
    finally:
        proxy.close()


async def test_deadlines_hold_while_the_network_is_silent(private_redis: PrivateRedis, partitioned: TcpProxy) -> None:
    # client -> proxy -> Redis; the operator talks to Redis directly and is slow, so nothing is ready
    operator = FakeOperator("silent", broker_url=private_redis.url, behaviour=lambda p: Delay(60, Echo()))
    url = proxy_url(partitioned)
    policy = ConnectionPolicy(io_timeout=2.0)
    with operator.in_thread():
        async with create_async_client("silent", "v1", broker_url=url, timeout=60, connection=policy) as client:
            handle = await client.async_call([], {})
            submitted = await client.batch_submit([([], {}) for _ in range(3)])
            with pytest.raises(TaskTimeoutError):  # the result connection is up (a long-lived client's is)
                await handle.get(timeout=0.2)
            partitioned.black_hole()  # existing and new connections: nothing answers, nothing is refused

            async def bounded(call: Callable[[], Awaitable[Any]]) -> Any:
                started = time.monotonic()
                with anyio.fail_after(30):
                    try:
                        result = await call()
                    except Exception as exc:
                        result = exc
                return result, time.monotonic() - started

            got, took = await bounded(lambda: handle.get(timeout=3))
            assert isinstance(got, TaskTimeoutError) and took < 4.5, (got, took)
            got, took = await bounded(lambda: client.batch_collect(submitted, timeout=3))
            assert all(isinstance(r.error, TaskTimeoutError) for r in got) and took < 4.5, (got, took)
            got, took = await bounded(lambda: client.batch_sync_detailed([([], {})] * 2, timeout=3))
            # not answered in time, or (the result connection being remade) not sent at all: said so
            assert took < 4.5 and all(
                isinstance(r.error, (TaskTimeoutError, PublishOutcomeUnknownError))
                or (not r.submitted and isinstance(r.error, OperatorConnectionError))
                for r in got
            ), (got, took)
            # a submit has no result to wait for: its write and the settling of its outcome are bounded by
            # the I/O timeout each, and it says the outcome is unknown
            got, took = await bounded(lambda: client.async_call([], {}))
            assert isinstance(got, PublishOutcomeUnknownError) and took < 2 * 2.0 + 2.5, (got, took)
            partitioned.heal()
            operator.behaviour = lambda payload: Echo()
            with anyio.fail_after(30):
                assert (await client.sync([], {"text": "healed"}, timeout=20))[1]["echo"] == "healed"


async def test_every_connection_has_tcp_keepalive(private_redis: PrivateRedis) -> None:
    operator = FakeOperator("keepalive", broker_url=private_redis.url)
    policy = ConnectionPolicy(keepalive_idle=7, keepalive_interval=3, keepalive_count=4)
    with operator.in_thread():
        async with create_async_client("keepalive", "v1", broker_url=private_redis.url) as warm:
            await warm.sync([], {})  # the operator has made every connection it makes
        before = _sockets_to(private_redis.port)
        async with create_async_client("keepalive", "v1", broker_url=private_redis.url, connection=policy) as client:
            await client.sync([], {})  # the result connection (and the LPUSH on it)
            await client.queue_depth()  # the command connection
            socks = [sock for sock in _sockets_to(private_redis.port) if sock not in before]
            assert len(socks) == 2 and client.statistics().connections == 2
            for sock in socks:
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 7
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 3
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4


async def test_back_to_back_calls_never_stop_to_look_at_their_connections(
    private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # budget: a connection in steady use is not polled (a system call a call); one idle for longer
    # than idle_check is, once
    from sandai_operator_client._io import sockets

    looks: list = []
    real = sockets.SocketByteStream.receive_nowait

    def counted(self: Any) -> bytes:
        looks.append(1)
        return real(self)

    monkeypatch.setattr(sockets.SocketByteStream, "receive_nowait", counted)
    operator = FakeOperator("steady", broker_url=private_redis.url)
    with operator.in_thread():
        async with create_async_client("steady", "v1", broker_url=private_redis.url, timeout=20) as client:
            await client.sync([], {})
            await client.async_call([], {})
            looks.clear()
            for _ in range(20):
                await client.sync([], {})
                await client.async_call([], {})
            assert looks == []
            await anyio.sleep(0.3)
            await client.sync([], {})
            assert 1 <= len(looks) <= 4  # each idle connection, read until nothing is left


def _sockets_to(port: int) -> List[socket.socket]:
    """The open sockets of this process connected to 127.0.0.1:``port``."""
    found = []
    for obj in gc.get_objects():
        if isinstance(obj, socket.socket) and obj.fileno() >= 0:
            try:
                if obj.getpeername()[1] == port:
                    found.append(obj)
            except (OSError, IndexError):
                pass
    return found
