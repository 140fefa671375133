"""Fault injection with real Redis processes: restarts, dropped connections, dead servers, garbage, load."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any, Dict, List

import anyio
import pytest
import redis

from sandai_operator_client import (
    OperatorConnectionError,
    ResultDecodeError,
    create_async_client,
    create_client,
)
from sandai_operator_client.testing import Delay, Echo, FakeOperator, RawRecord

from .conftest import PrivateRedis

pytestmark = pytest.mark.anyio


def _sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


async def test_restart_while_hundreds_are_awaited(private_redis: PrivateRedis) -> None:
    operator = FakeOperator(
        "restart", broker_url=private_redis.url, behaviour=lambda p: Delay(1.0, Echo()), reliable=True
    )
    results: Dict[int, Any] = {}
    with operator.in_thread():
        async with create_async_client("restart", "v1", broker_url=private_redis.url, timeout=60) as client:

            async def call(i: int) -> None:
                results[i] = await client.sync([], {"text": str(i)})

            async with anyio.create_task_group() as tg:
                for i in range(300):
                    tg.start_soon(call, i)
                await anyio.sleep(0.4)  # all subscribed and published, none answered yet
                await anyio.to_thread.run_sync(private_redis.restart)
            assert client.statistics().watched_channels == 0
    assert {i: r[1]["echo"] for i, r in results.items()} == {i: str(i) for i in range(300)}


def test_restart_while_the_sync_client_waits(private_redis: PrivateRedis) -> None:
    operator = FakeOperator(
        "restart-sync", broker_url=private_redis.url, behaviour=lambda p: Delay(1.0, Echo()), reliable=True
    )
    with operator.in_thread(), create_client("restart-sync", "v1", broker_url=private_redis.url) as client:
        restarter = threading.Timer(0.4, private_redis.restart)
        restarter.start()
        results = client.batch_sync_detailed([([], {"text": str(i)}) for i in range(300)], timeout=60)
        restarter.join()
    assert all(r.success for r in results), [r.error for r in results if not r.success][:3]


async def test_dropped_pubsub_connection(private_redis: PrivateRedis) -> None:
    operator = FakeOperator("drop", broker_url=private_redis.url, behaviour=lambda p: Delay(0.6, Echo()))
    admin = redis.Redis.from_url(private_redis.url)
    with operator.in_thread():
        async with create_async_client("drop", "v1", broker_url=private_redis.url, timeout=60) as client:
            results: List[Any] = []

            async def call(i: int) -> None:
                results.append(await client.sync([], {"text": str(i)}))

            async with anyio.create_task_group() as tg:
                for i in range(100):
                    tg.start_soon(call, i)
                await anyio.sleep(0.2)
                killed = admin.client_kill_filter(_type="pubsub")
                assert killed >= 1
    assert sorted(r[1]["echo"] for r in results) == sorted(str(i) for i in range(100))


async def test_restart_during_batch_submits(private_redis: PrivateRedis) -> None:
    # each task is either reported submitted and its result arrives, or reported failed and never runs
    operator = FakeOperator("submit-restart", broker_url=private_redis.url, reliable=True)
    batches: List[Any] = []
    with operator.in_thread():
        async with create_async_client("submit-restart", "v1", broker_url=private_redis.url, timeout=60) as client:

            async def submitter() -> None:
                for _ in range(40):
                    batches.append(await client.batch_submit([([], {"text": "x"})] * 100))
                    await anyio.sleep(0.01)

            async with anyio.create_task_group() as tg:
                tg.start_soon(submitter)
                await anyio.sleep(0.15)
                await anyio.to_thread.run_sync(private_redis.restart, 0.5)
            submitted = [s for batch in batches for s in batch if s.submitted]
            failed = [s for batch in batches for s in batch if not s.submitted]
            collected = await client.batch_collect(submitted, timeout=60)
        await anyio.sleep(1.0)  # let anything wrongly sent reach the operator
    ran = {p["_task_id"] for p in operator.received}
    assert failed, "the restart should have failed some submissions"
    assert all(r.success for r in collected), [r.error for r in collected if not r.success][:3]
    assert all(isinstance(s.error, OperatorConnectionError) for s in failed)
    assert not ran & {s.task_id for s in failed if s.task_id}
    assert {r.task_id for r in collected} <= ran


def test_dead_backend_then_recovery(private_redis: PrivateRedis) -> None:
    operator_name = "dead"
    with create_client(operator_name, "v1", broker_url=private_redis.url) as client:
        private_redis.stop()
        started = time.monotonic()
        with pytest.raises(OperatorConnectionError):
            client.sync([], {}, timeout=30)
        results = client.batch_sync_detailed([([], {}), ([], {})], timeout=30)
        assert all(not r.submitted and isinstance(r.error, OperatorConnectionError) for r in results)
        assert not client.probe(timeout=5).submit_ok
        assert time.monotonic() - started < 30
        private_redis.start()
        with FakeOperator(operator_name, broker_url=private_redis.url).in_thread():
            assert client.sync([], {"text": "back"}, timeout=30)[1]["echo"] == "back"


async def test_garbage_records_hit_only_their_waiter(private_redis: PrivateRedis) -> None:
    garbage = {
        "pickle": b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x06status\x94\x8c\x07SUCCESS\x94s.",
        "truncated": b'{"status": "SUCCESS", "result": {"sta',
        "not-a-record": b"\xc1\xc1\xc1",
        "unknown-type": b'{"status": "SUCCESS", "result": {"__type__": "pickle", "__value__": "x"}}',
    }

    def behaviour(payload: Dict[str, Any]) -> Any:
        kind = payload["options"].get("garbage")
        return RawRecord(garbage[kind]) if kind else Echo()

    operator = FakeOperator("garbage", broker_url=private_redis.url, behaviour=behaviour)
    with operator.in_thread():
        async with create_async_client("garbage", "v1", broker_url=private_redis.url, timeout=30) as client:
            tasks = [([], {"garbage": kind}) for kind in garbage] + [([], {"text": str(i)}) for i in range(10)]
            results = await client.batch_sync_detailed(tasks, timeout=30)
            for result in results[: len(garbage)]:
                assert isinstance(result.error, ResultDecodeError), result.error
            assert all(r.success for r in results[len(garbage) :])
            assert (await client.sync([], {"text": "later"}))[1]["echo"] == "later"


async def test_ten_thousand_waiters(private_redis: PrivateRedis) -> None:
    # the operator runs in its own process, so everything traced here is the client's
    operator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandai_operator_client.testing.fake_operator",
            "many",
            "v1",
            private_redis.url,
            "--delay",
            "0.5",
        ]
    )
    try:
        async with create_async_client("many", "v1", broker_url=private_redis.url, timeout=120) as client:
            await client.sync([], {})  # connections made, operator up
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.take_snapshot()
            sockets_before = _sockets()
            peak_sockets = 0
            done = 0

            async def call(i: int) -> None:
                nonlocal done
                await client.sync([], {"text": str(i)})
                done += 1

            async with anyio.create_task_group() as tg:
                for i in range(10_000):
                    tg.start_soon(call, i)
                while done < 10_000:
                    peak_sockets = max(peak_sockets, _sockets())
                    await anyio.sleep(0.05)
            assert client.statistics().watched_channels == 0 and client.statistics().waiting_calls == 0
            gc.collect()
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
    finally:
        operator.terminate()
        operator.wait(10)
    assert peak_sockets - sockets_before <= 2  # no connection per waiter
    ours = [tracemalloc.Filter(True, "*sandai_operator_client*")]
    diff = after.filter_traces(ours).compare_to(before.filter_traces(ours), "lineno")
    left = sum(stat.size_diff for stat in diff)
    assert left < 256 * 1024, f"{left / 1e3:.0f} kB left behind by 10,000 finished waiters: {diff[:5]}"


async def test_tls_with_ca(tmp_path: Path, tls_certs: Path) -> None:
    server = PrivateRedis(tmp_path, tls_dir=tls_certs, password="tls-s3cret")
    server.start()
    try:
        with FakeOperator("tls", broker_url=server.url).in_thread():
            async with create_async_client("tls", "v1", broker_url=server.url, timeout=30) as client:
                assert (await client.sync([], {"text": "over tls"}))[1]["echo"] == "over tls"
                assert "tls-s3cret" not in repr(client)
        untrusted = server.url.split("?")[0]  # no CA: the self-signed chain must be refused
        async with create_async_client("tls", "v1", broker_url=untrusted) as client:
            with pytest.raises(OperatorConnectionError) as info:
                await client.sync([], {}, timeout=5)
            assert "tls-s3cret" not in str(info.value)
    finally:
        server.stop()


def test_password_and_unix_socket(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = PrivateRedis(tmp_path, password="pw-s3cret", unix=True)
    server.start()
    try:
        with (
            FakeOperator("unix", broker_url=server.url).in_thread(),
            create_client("unix", "v1", broker_url=server.url, debug=True) as client,
        ):
            assert client.sync([], {"text": "unix"})[1]["echo"] == "unix"
        wrong = server.url.replace("pw-s3cret", "wrong-pw")
        with create_client("unix", "v1", broker_url=wrong) as client:
            with pytest.raises(OperatorConnectionError) as info:
                client.sync([], {}, timeout=5)
            health = client.probe(timeout=2)
        assert "WRONGPASS" in str(info.value) or "invalid" in str(info.value).lower()
        for text in (str(info.value), repr(client), str(health), caplog.text):
            assert "pw-s3cret" not in text and "wrong-pw" not in text
    finally:
        server.stop()


async def test_connection_killed_during_batch(private_redis: PrivateRedis) -> None:
    # tasks whose publish failed are reported at once; the batch waits only for the ones that went out
    admin = redis.Redis.from_url(private_redis.url)
    operator = FakeOperator(
        "killed", broker_url=private_redis.url, reliable=True, behaviour=lambda p: Delay(0.002, Echo())
    )
    with operator.in_thread():
        async with create_async_client("killed", "v1", broker_url=private_redis.url, timeout=60) as client:
            for _ in range(4):
                async with anyio.create_task_group() as tg:

                    async def kill() -> None:
                        await anyio.sleep(0.05)
                        admin.client_kill_filter(_type="normal", skipme=True)
                        admin.client_kill_filter(_type="pubsub", skipme=True)

                    tg.start_soon(kill)
                    started = time.monotonic()
                    results = await client.batch_sync_detailed(
                        [([], {"text": str(i)}) for i in range(3000)], timeout=60
                    )
                assert time.monotonic() - started < 30
                assert all(r.success or not r.submitted for r in results)
                assert all(r.results["echo"] == str(r.index) for r in results if r.success)


async def test_server_without_resp3(tmp_path: Path) -> None:
    # a server that refuses HELLO (as Redis < 6 does): RESP2, AUTH on its own, LPUSH on the command channel
    server = PrivateRedis(tmp_path, password="p4ss", extra_args=["--rename-command", "HELLO", ""])
    server.start()
    try:
        with FakeOperator("resp2", broker_url=server.url).in_thread():
            async with create_async_client("resp2", "v1", broker_url=server.url, timeout=30) as client:
                assert (await client.sync([], {"text": "one"}))[1]["echo"] == "one"
                admin = redis.Redis.from_url(server.url, protocol=2)
                assert {c["resp"] for c in admin.client_list()} == {"2"}  # the hub too speaks RESP2
                results: List[Any] = []

                async def call(i: int) -> None:
                    results.append(await client.sync([], {"text": str(i)}))

                async with anyio.create_task_group() as tg:
                    for i in range(50):
                        tg.start_soon(call, i)
                batch = await client.batch_sync_detailed([([], {"text": str(i)}) for i in range(50)])
                assert sorted(r[1]["echo"] for r in results) == sorted(str(i) for i in range(50))
                assert all(r.success for r in batch)
                assert client.statistics().watched_channels == 0
    finally:
        server.stop()


async def test_a_server_that_stops_answering_fails_the_pipeline_after_io_timeout(private_redis: PrivateRedis) -> None:
    # SIGSTOP: the connection stays open but nothing comes back; the flush must give up, say the commands
    # may have been sent, and drop the connection (a later pipeline reconnects)
    import signal

    from sandai_operator_client._core.command_channel import CommandChannel
    from sandai_operator_client._io.redis import ConnectionLost, parse_redis_url
    from sandai_operator_client.config import ConnectionPolicy

    channel = CommandChannel(parse_redis_url(private_redis.url), ConnectionPolicy(io_timeout=0.5))
    assert await channel.execute("PING") == "PONG"
    assert private_redis.proc is not None
    private_redis.proc.send_signal(signal.SIGSTOP)
    try:
        with anyio.fail_after(10):
            with pytest.raises(ConnectionLost, match=r"did not answer within 0\.5s") as caught:
                await channel.execute("PING")
        assert caught.value.maybe_sent
    finally:
        private_redis.proc.send_signal(signal.SIGCONT)
    with anyio.fail_after(10):
        assert await channel.execute("PING") == "PONG"
    await channel.aclose()
