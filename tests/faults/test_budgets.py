"""Performance rules as counts (stable on a noisy machine), each at today's figure plus a small margin:
round trips and writes of a sync(), commands it costs the server, GC-tracked objects per pending call,
peak traced memory of a 2,000-task batch, modules a first blocking call imports. A budget exceeded fails
with the figure; the figures and their history are in benchmarks/README.md."""

from __future__ import annotations

import gc
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Dict, Iterator

import anyio
import pytest
import redis
import sniffio

from sandai_operator_client import create_async_client, create_client
from sandai_operator_client.testing import FakeOperator

from .conftest import PrivateRedis, operator_process
from .proxy import TcpProxy, proxy_url

WRITES_PER_SYNC = 2  # at most: SUBSCRIBE + LPUSH in one write, UNSUBSCRIBE + DEL in one (or with the next call's)
COMMANDS_PER_SYNC = {"subscribe": 1, "lpush": 1, "unsubscribe": 1, "del": 1}
OBJECTS_PER_PENDING_CALL = {"asyncio": 42, "trio": 50}  # GC-tracked objects per waiting sync(), its task included
BATCH_PEAK_MB = 2.3  # tracemalloc peak of the client while a 2,000-task batch runs
# modules a first blocking call adds to what the interpreter had loaded: other packages' (the standard
# library's, anyio's...), and our own (cheap, but not the testing kit, the CLI or the async facade)
FIRST_CALL_FOREIGN_MODULES = 155
FIRST_CALL_OWN_MODULES = 45


def _commandstats(admin: redis.Redis) -> Dict[str, int]:
    return {name.split("_", 1)[1]: int(stats["calls"]) for name, stats in admin.info("commandstats").items()}


@pytest.fixture
def operator_on(private_redis: PrivateRedis) -> Iterator[FakeOperator]:
    operator = FakeOperator("budget", broker_url=private_redis.url)
    with operator.in_thread():
        yield operator


def test_a_sync_is_one_write_and_four_commands(private_redis: PrivateRedis, operator_on: FakeOperator) -> None:
    proxy = TcpProxy(("127.0.0.1", private_redis.port))
    admin = redis.Redis.from_url(private_redis.url)
    try:
        with create_client("budget", "v1", broker_url=proxy_url(proxy)) as client:
            client.sync([], {"text": "warm"})  # connections made, HELLO exchanged
            client.sync([], {"text": "warm"})
            reads, before = proxy.reads_from_clients, _commandstats(admin)
            for i in range(20):
                assert client.sync([], {"text": str(i)})[1]["echo"] == str(i)
            writes = (proxy.reads_from_clients - reads) / 20
            after = _commandstats(admin)
        ours = {c: after.get(c, 0) - before.get(c, 0) for c in COMMANDS_PER_SYNC}
        # the fake operator's own commands (BLMPOP, MULTI, SETEX...) are not among these; a call's
        # UNSUBSCRIBE + DEL may ride with a later write, so the window's ends may shift them by one
        assert (ours["subscribe"], ours["lpush"]) == (20, 20), ours
        assert 19 <= ours["unsubscribe"] == ours["del"] <= 21, ours
        assert set(ours) == set(COMMANDS_PER_SYNC)
        assert writes <= WRITES_PER_SYNC, f"{writes} client writes per sync() (budget {WRITES_PER_SYNC})"
    finally:
        proxy.close()
        admin.close()


@pytest.mark.anyio
async def test_objects_per_pending_call(private_redis: PrivateRedis) -> None:
    # the operator in its own process (answering after 2 s): only the client's objects are counted
    with operator_process("budget-gc", private_redis.url, "--delay", "2"):
        async with create_async_client("budget-gc", "v1", broker_url=private_redis.url) as client:
            await client.sync([], {"sleep": 0}, timeout=30)  # warm: connections and caches made
            gc.collect()
            before = len(gc.get_objects())
            async with anyio.create_task_group() as tg:
                for i in range(500):
                    tg.start_soon(client.sync, [], {"text": str(i)})
                while client.statistics().waiting_calls < 500:
                    await anyio.sleep(0.01)
                gc.collect()
                per_call = (len(gc.get_objects()) - before) / 500
                library = sniffio.current_async_library()
                tg.cancel_scope.cancel()
    budget = OBJECTS_PER_PENDING_CALL[library]
    assert per_call <= budget, f"{per_call:.1f} objects per pending call on {library} (budget {budget})"


def test_peak_memory_of_a_2000_task_batch(private_redis: PrivateRedis, tmp_path: Path) -> None:
    # the operator in its own process: only the client's allocations are traced
    with operator_process("budget-batch", private_redis.url):
        with create_client("budget-batch", "v1", broker_url=private_redis.url) as client:
            client.sync([], {"text": "warm"})
            tasks = [([], {"text": str(i)}) for i in range(2000)]
            tracemalloc.start()
            try:
                results = client.batch_sync_detailed(tasks, timeout=120)
                peak = tracemalloc.get_traced_memory()[1] / 2**20
            finally:
                tracemalloc.stop()
    assert all(r.success for r in results)
    assert peak <= BATCH_PEAK_MB, f"{peak:.2f} MB traced peak (budget {BATCH_PEAK_MB})"


def test_modules_a_first_blocking_call_imports(private_redis: PrivateRedis, operator_on: FakeOperator) -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "from sandai_operator_client import create_client\n"
        f"with create_client('budget', 'v1', broker_url={private_redis.url!r}) as c:\n"
        "    c.sync([], {'text': 'x'})\n"
        "new = set(sys.modules) - before\n"
        "own = [m for m in new if m.split('.')[0] == 'sandai_operator_client']\n"
        "print(len(new) - len(own), len(own))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    foreign, own = map(int, output.split())
    assert foreign <= FIRST_CALL_FOREIGN_MODULES, (
        f"{foreign} other packages' modules after a first blocking call (budget {FIRST_CALL_FOREIGN_MODULES})"
    )
    assert own <= FIRST_CALL_OWN_MODULES, (
        f"{own} own modules after a first blocking call (budget {FIRST_CALL_OWN_MODULES})"
    )
