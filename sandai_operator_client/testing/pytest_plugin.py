"""pytest fixtures for code that talks to Sandai operators (auto-registered through ``pytest11``).

``sandai_redis_url``       a reachable Redis (``SANDAI_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/0``);
                           the test fails, never skips, when it is unreachable.
``sandai_operator_name``   a fresh operator name per test, so parallel tests never share queues.
``fake_operator``          a running :class:`FakeOperator` with that name (scripted via ``.behaviour``).
``operator_client``        an ``OperatorClient`` wired to it (closed afterwards).
``async_operator_client``  an ``AsyncOperatorClient`` wired to it (needs the anyio pytest plugin's backend).
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:  # the client and the fake are imported by the fixtures that use them, not by every run
    from .._async import AsyncOperatorClient
    from .._sync import OperatorClient
    from .fake_operator import FakeOperator


@pytest.fixture(scope="session")
def sandai_redis_url() -> str:
    """URL of a reachable Redis server."""
    url = os.environ.get("SANDAI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=3):
            pass
    except OSError as exc:
        pytest.fail(
            f"Redis is not reachable at {parts.hostname}:{parts.port} ({exc}); start it or set SANDAI_TEST_REDIS_URL",
            pytrace=False,
        )
    return url


@pytest.fixture
def sandai_operator_name() -> str:
    """A unique operator name for this test."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def fake_operator(sandai_redis_url: str, sandai_operator_name: str) -> Iterator[FakeOperator]:
    """A FakeOperator consuming this test's queues, running in a background thread."""
    from .fake_operator import FakeOperator

    operator = FakeOperator(sandai_operator_name, "v1", broker_url=sandai_redis_url)
    with operator.in_thread():
        yield operator


@pytest.fixture
def operator_client(fake_operator: FakeOperator) -> Iterator[OperatorClient]:
    """A sync client for ``fake_operator``."""
    from .._sync import OperatorClient

    client = OperatorClient(fake_operator.name, fake_operator.version, broker_url=fake_operator.broker_url, timeout=60)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def async_operator_client(fake_operator: FakeOperator) -> AsyncIterator[AsyncOperatorClient]:
    """An async client for ``fake_operator``."""
    from .._async import AsyncOperatorClient

    async with AsyncOperatorClient(
        fake_operator.name, fake_operator.version, broker_url=fake_operator.broker_url, timeout=60
    ) as client:
        yield client


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "sandai: tests that use the sandai-operator-client testing kit")
