"""One benchmark workload in one process; prints a JSON line of measurements.

``python workloads.py IMPL WORKLOAD OPERATOR REDIS_URL`` where IMPL is ``ours`` (this project), ``seed``
(the published sandai-operator-client 0.4.6, run in its own virtualenv), ``bare`` (redis-py doing the
same wire work with no client logic: SUBSCRIBE, LPUSH a ready envelope, wait for the PUBLISH, DEL) or,
for ``submit`` only, ``raw`` (the same LPUSHes over a plain blocking socket: the floor of waiting for
each reply).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

# The harness imports as little as it can (no statistics, uuid only for bare redis-py): peak memory is
# the whole process's, and those two modules alone are 1.3 MB, the same for every client measured.
IMPL, WORKLOAD, NAME, URL = sys.argv[1:5]
BROKER = sys.argv[5] if len(sys.argv) > 5 else URL
N_SEQ, N_SUBMIT, N_SUBMIT_ASYNC, N_BATCH, N_CONC = 300, 3000, 10000, 2000, 2000


def sockets() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return n


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM).

    Not ``getrusage``: its ``ru_maxrss`` survives ``execve``, so it would report the forked parent's size
    when that was larger than this process ever got.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(**values: object) -> None:
    values["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(values))


def percentiles(samples: list) -> dict:
    samples = sorted(samples)
    middle = len(samples) // 2
    median = samples[middle] if len(samples) % 2 else (samples[middle - 1] + samples[middle]) / 2
    return {"p50_ms": median * 1e3, "p99_ms": samples[int(len(samples) * 0.99) - 1] * 1e3}


# ------------------------------------------------------------------------------ clients
def make_sync():
    if IMPL == "ours":
        from sandai_operator_client import create_client
    else:
        from sandai.operator_client import create_client
    return create_client(NAME, "v1", broker_url=BROKER, result_backend=URL, timeout=120)


def make_async():
    if IMPL == "ours":
        from sandai_operator_client import create_async_client
    else:
        from sandai.operator_client import create_async_client
    return create_async_client(NAME, "v1", broker_url=BROKER, result_backend=URL, timeout=120)


class Bare:
    """redis-py with the protocol precomputed: the wire work of a call and nothing else."""

    def __init__(self) -> None:
        import uuid

        import redis

        from sandai_operator_client.protocol.celery import encode_task_message, operator_task_name
        from sandai_operator_client.protocol.kombu_redis import encode_redis_envelope

        self.uuid = uuid
        self.r = redis.Redis.from_url(URL)
        self.p = self.r.pubsub()
        message = encode_task_message(
            task_id="TASKID",
            task_name=operator_task_name(NAME, "v1"),
            kwargs={"meta": {"persistent-output": False}, "artifacts": [], "options": {"text": "x"}},
            origin="bench",
            reply_to="r",
        )
        self.template = encode_redis_envelope(message, queue=f"normal.{NAME}.v1", delivery_tag="TAG")
        self.queue = f"normal.{NAME}.v1"

    def envelope(self, task_id: str) -> bytes:
        tag = b'"%s"' % self.uuid.uuid4().hex.encode()
        return self.template.replace(b"TASKID", task_id.encode()).replace(b'"TAG"', tag)

    def call(self) -> None:
        task_id = str(self.uuid.uuid4())
        key = "celery-task-meta-" + task_id
        self.p.subscribe(key)
        self.r.lpush(self.queue, self.envelope(task_id))
        while True:
            m = self.p.get_message(timeout=30)
            if m and m["type"] == "message":
                break
        self.p.unsubscribe(key)
        self.r.delete(key)


# ------------------------------------------------------------------------------ workloads
def sequential() -> None:
    samples = []
    if IMPL == "bare":
        bare = Bare()
        for _ in range(20):
            bare.call()
        for _ in range(N_SEQ):
            t = time.perf_counter()
            bare.call()
            samples.append(time.perf_counter() - t)
    else:
        client = make_sync()
        for _ in range(20):
            client.sync([], {"text": "x"})
        for _ in range(N_SEQ):
            t = time.perf_counter()
            client.sync([], {"text": "x"})
            samples.append(time.perf_counter() - t)
    report(**percentiles(samples), n=N_SEQ)


def raw_lpush_floor() -> float:
    """Blocking LPUSH round trips per second over a plain socket, the commands encoded beforehand: the
    floor of any client that, like the seed, waits for each LPUSH's reply (a failed publish must raise)."""
    import socket
    from urllib.parse import urlsplit

    from sandai_operator_client.protocol.resp import encode_command

    bare = Bare()
    commands = [encode_command("LPUSH", bare.queue, bare.envelope(str(bare.uuid.uuid4()))) for _ in range(N_SUBMIT)]
    address = urlsplit(URL)
    sock = socket.create_connection((address.hostname or "127.0.0.1", address.port or 6379))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t = time.perf_counter()
    for command in commands:
        sock.sendall(command)
        if not sock.recv(64).endswith(b"\r\n"):  # ":<length>\r\n" arrives whole on loopback
            raise RuntimeError("partial LPUSH reply")
    elapsed = time.perf_counter() - t
    sock.close()
    return N_SUBMIT / elapsed


def submit() -> None:
    if IMPL == "raw":
        report(per_s=raw_lpush_floor(), n=N_SUBMIT)
        return
    if IMPL == "bare":
        bare = Bare()
        t = time.perf_counter()
        for _ in range(N_SUBMIT):
            bare.r.lpush(bare.queue, bare.envelope(str(bare.uuid.uuid4())))
    else:
        client = make_sync()
        client.async_call([], {"text": "warm"})
        t = time.perf_counter()
        for _ in range(N_SUBMIT):
            client.async_call([], {"text": "x"})
    elapsed = time.perf_counter() - t
    report(per_s=N_SUBMIT / elapsed, n=N_SUBMIT)


def batch() -> None:
    tasks = [([], {"text": str(i)}) for i in range(N_BATCH)]
    if IMPL == "bare":
        bare = Bare()
        t = time.perf_counter()
        ids = [str(bare.uuid.uuid4()) for _ in range(N_BATCH)]
        keys = ["celery-task-meta-" + i for i in ids]
        bare.p.subscribe(*keys)
        pipe = bare.r.pipeline(transaction=False)
        for i in ids:
            pipe.lpush(bare.queue, bare.envelope(i))
        pipe.execute()
        got = 0
        while got < N_BATCH:
            m = bare.p.get_message(timeout=30)
            if m and m["type"] == "message":
                got += 1
        bare.p.unsubscribe(*keys)
        bare.r.delete(*keys)
        ok = got
    else:
        client = make_sync()
        client.sync([], {"text": "warm"})
        t = time.perf_counter()
        results = client.batch_sync_detailed(tasks, timeout=120)
        ok = sum(r.success for r in results)
    elapsed = time.perf_counter() - t
    report(per_s=N_BATCH / elapsed, ok=ok, n=N_BATCH, sockets=sockets())


def submit_async() -> None:
    """Concurrent ``await async_call`` from one event loop: how fast submissions coalesce."""
    if IMPL == "bare":
        bare = Bare()
        t = time.perf_counter()
        pipe = bare.r.pipeline(transaction=False)
        for _ in range(N_SUBMIT_ASYNC):
            pipe.lpush(bare.queue, bare.envelope(str(bare.uuid.uuid4())))
        pipe.execute()
        report(per_s=N_SUBMIT_ASYNC / (time.perf_counter() - t), n=N_SUBMIT_ASYNC)
        return

    async def main() -> float:
        import asyncio  # the same user code for both clients: asyncio.gather of the calls

        client = make_async()
        await client.async_call([], {"text": "warm"})
        t = time.perf_counter()
        await asyncio.gather(*(client.async_call([], {"text": str(i)}) for i in range(N_SUBMIT_ASYNC)))
        elapsed = time.perf_counter() - t
        await client.aclose()
        return elapsed

    import asyncio

    elapsed = asyncio.run(main())
    report(per_s=N_SUBMIT_ASYNC / elapsed, n=N_SUBMIT_ASYNC)


def concurrent(backend: str = "asyncio") -> None:
    """2,000 concurrent ``await sync()``: asyncio.gather for both clients; under trio, a task group."""
    if IMPL == "bare":
        report(skipped="bare redis-py has no async path here")
        return

    async def main() -> dict:
        client = make_async()
        await client.sync([], {"text": "warm"})
        t = time.perf_counter()
        if backend == "trio":
            import anyio

            async with anyio.create_task_group() as tg:
                for i in range(N_CONC):
                    tg.start_soon(client.sync, [], {"text": str(i)})
        else:
            import asyncio

            await asyncio.gather(*(client.sync([], {"text": str(i)}) for i in range(N_CONC)))
        elapsed = time.perf_counter() - t
        n_sockets = sockets()
        await client.aclose()
        return {"per_s": N_CONC / elapsed, "n": N_CONC, "sockets": n_sockets}

    if backend == "trio":  # the seed's async client is asyncio-only
        import anyio

        result = anyio.run(main, backend="trio")
    else:
        import asyncio

        result = asyncio.run(main())
    report(**result)


def import_time() -> None:
    """Importing the package, then (what a first call pays on top) its client factory and one client."""
    t = time.perf_counter()
    if IMPL == "ours":
        import sandai_operator_client  # noqa: F401
    elif IMPL == "seed":
        import sandai.operator_client  # noqa: F401
    else:
        import redis
    imported = time.perf_counter()
    if IMPL == "bare":
        redis.Redis.from_url(URL)
    else:
        make_sync()
    ready = time.perf_counter()
    report(import_ms=(imported - t) * 1e3, ready_ms=(ready - t) * 1e3)


WORKLOADS = {
    "sequential": sequential,
    "submit": submit,
    "submit_async": submit_async,
    "batch": batch,
    "concurrent": concurrent,
    "concurrent_trio": lambda: concurrent("trio"),
    "import": import_time,
    "amqp_sequential": sequential,
    "amqp_batch": batch,
}

if __name__ == "__main__":
    WORKLOADS[WORKLOAD]()
