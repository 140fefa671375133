"""Shared fixtures: anyio backends, the real SDK operator, a redis-py admin connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "protocol_fixtures"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: Any) -> str:
    """Every async test runs under asyncio and trio."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def redis_url(sandai_redis_url: str) -> str:
    return sandai_redis_url


@pytest.fixture(scope="session")
def redis_admin(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client for assertions about server state."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def load_fixture(name: str) -> Dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())  # type: ignore[no-any-return]


def sdk_python() -> str:
    path = Path(os.environ.get("SANDAI_SDK_PYTHON", ROOT / ".interop" / "sdk-0.6.2" / "bin" / "python"))
    if not path.exists():
        pytest.fail(
            f"the operator SDK environment is missing ({path}); run `make interop` (make test does)", pytrace=False
        )
    return str(path)


class SdkOperator:
    """A real operator (protocol_fixtures/echo_operator.py) in the SDK's own virtualenv."""

    def __init__(
        self, redis_url: str, name: str, tmp: Path, extra_env: Dict[str, str], broker_url: str = "", python: str = ""
    ) -> None:
        self.name, self.version = name, "v1"
        self.broker_url, self.result_backend = broker_url or redis_url, redis_url
        self.log = tmp / f"{name}.log"
        env = dict(
            os.environ,
            SANDAI_OPERATOR_ENV="prod",
            SANDAI_OPERATOR_CELERY_BROKER_URL=self.broker_url,
            SANDAI_OPERATOR_CELERY_RESULT_BACKEND=redis_url,
            SANDAI_OPERATOR_TEMP_DIR=str(tmp / "artifacts"),
        )
        env.update(extra_env)
        self.proc = subprocess.Popen(
            [python or sdk_python(), str(FIXTURES / "echo_operator.py"), name, "v1"],
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 90, task_serializer: str = "msgpack") -> None:
        from sandai_operator_client import create_client

        deadline = time.monotonic() + timeout
        with create_client(
            self.name,
            self.version,
            broker_url=self.broker_url,
            result_backend=self.result_backend,
            task_serializer=task_serializer,
        ) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    pytest.fail(f"SDK operator exited: {self.log.read_text()[-3000:]}", pytrace=False)
                if client.probe(timeout=5).response_ok:
                    return
        pytest.fail(f"SDK operator did not answer: {self.log.read_text()[-3000:]}", pytrace=False)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def sdk_operator(redis_url: str, tmp_path_factory: Any, redis_admin: redis.Redis) -> Iterator[SdkOperator]:
    """One real SDK operator for the session, on its own unique queues."""
    op = SdkOperator(redis_url, f"sdk-{uuid.uuid4().hex[:10]}", tmp_path_factory.mktemp("sdk"), {})
    try:
        op.wait_ready()
        yield op
    finally:
        op.stop()
        for key in redis_admin.scan_iter(match=f"*{op.name}*"):
            redis_admin.delete(key)


@pytest.fixture
def unique_name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def python_exe() -> str:
    return sys.executable


AMQP_URL = os.environ.get("SANDAI_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def delete_amqp_queues(name: str) -> None:
    """Remove an operator's queues and exchanges from RabbitMQ (tests share the broker)."""
    import kombu

    with kombu.Connection(AMQP_URL, connect_timeout=5) as connection:
        for priority in ("high", "normal", "low", "very_low"):
            channel = connection.channel()
            try:
                channel.queue_delete(f"{priority}.{name}.v1")
                channel.exchange_delete(f"{priority}.{name}.v1")
            except Exception:
                pass
            finally:
                try:
                    channel.close()
                except Exception:
                    pass


@pytest.fixture(scope="session")
def amqp_url() -> str:
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(AMQP_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=3):
            pass
    except OSError as exc:
        pytest.fail(f"RabbitMQ is not reachable at {AMQP_URL.split('@')[-1]} ({exc})", pytrace=False)
    return AMQP_URL


class AmqpSdkOperator(SdkOperator):
    """The real SDK operator on RabbitMQ; ``early`` holds tasks submitted before it first started."""

    early: Any
    early_client: Any


@pytest.fixture(scope="session")
def sdk_operator_amqp(
    amqp_url: str, redis_url: str, tmp_path_factory: Any, redis_admin: redis.Redis
) -> Iterator[AmqpSdkOperator]:
    """A real SDK operator on RabbitMQ with Redis results; tasks are sent before it first starts."""
    from sandai_operator_client import create_client

    name = f"sdk-amqp-{uuid.uuid4().hex[:8]}"
    client = create_client(name, "v1", broker_url=amqp_url, result_backend=redis_url, timeout=120)
    early = client.batch_submit([([], {"text": f"early-{i}"}) for i in range(3)], priority="low")
    op = AmqpSdkOperator(redis_url, name, tmp_path_factory.mktemp("sdk-amqp"), {}, broker_url=amqp_url)
    op.early, op.early_client = early, client
    try:
        yield op
    finally:
        op.stop()
        client.close()
        delete_amqp_queues(name)
        for key in redis_admin.scan_iter(match=f"*{name}*"):
            redis_admin.delete(key)


@pytest.fixture
def span_exporter() -> Iterator[Any]:
    """An in-memory exporter of every span finished during the test (the process-wide tracer provider
    is set once, by whichever test needs it first; each test adds an exporter of its own)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # a processor cannot be removed: a shut exporter drops what it is given
