"""pytest fixtures for code that talks to Sandai operators (auto-registered through ``pytest11``).

``sandai_redis_url``       a reachable Redis (``SANDAI_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/0``);
                           the test fails, never skips, when it is unreachable.
``sandai_operator_name``   a fresh operator name per test, so parallel tests never share queues
                           (override the fixture to pin one).
``sandai_operator_version`` the operator version, ``"v1"`` (override the fixture to change it).
``fake_operator``          a running :class:`FakeOperator` with that name and version (scripted via
                           ``.behaviour``; ``.received``, ``.skipped``, ``.assert_received(...)``).
``sandai_operator_env``    points ``SANDAI_OPERATOR_CELERY_BROKER_URL`` / ``..._RESULT_BACKEND`` at the
                           fake (for code that builds its own client from the environment); the fake.
``operator_client``        an ``OperatorClient`` wired to it (closed afterwards).
``async_operator_client``  an ``AsyncOperatorClient`` wired to it: a plain fixture, so it works under
                           anyio's plugin (asyncio and trio) and pytest-asyncio (strict and auto) alike;
                           its connections open in the test's event loop and are closed after the test
                           (``aclose()`` in the test does it earlier).

Importing this plugin (pytest does, in every run of an environment that has the package) loads neither
the client nor the fake: the fixtures that use them import them.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import TYPE_CHECKING, Any, Iterator
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
def sandai_operator_version() -> str:
    """The operator version the fixtures use."""
    return "v1"


@pytest.fixture
def fake_operator(
    sandai_redis_url: str, sandai_operator_name: str, sandai_operator_version: str
) -> Iterator[FakeOperator]:
    """A FakeOperator consuming this test's queues, running in a background thread."""
    from .fake_operator import FakeOperator

    operator = FakeOperator(sandai_operator_name, sandai_operator_version, broker_url=sandai_redis_url)
    with operator.in_thread():
        yield operator


@pytest.fixture
def sandai_operator_env(fake_operator: FakeOperator, monkeypatch: pytest.MonkeyPatch) -> FakeOperator:
    """The ``SANDAI_OPERATOR_CELERY_*`` URLs set to the fake's (undone after the test); the fake."""
    monkeypatch.setenv("SANDAI_OPERATOR_CELERY_BROKER_URL", fake_operator.broker_url)
    monkeypatch.setenv("SANDAI_OPERATOR_CELERY_RESULT_BACKEND", fake_operator.result_backend)
    return fake_operator


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
def async_operator_client(fake_operator: FakeOperator) -> Iterator[AsyncOperatorClient]:
    """An async client for ``fake_operator``, usable under any async test runner."""
    from .._async import AsyncOperatorClient

    client = AsyncOperatorClient(
        fake_operator.name, fake_operator.version, broker_url=fake_operator.broker_url, timeout=60
    )
    try:
        yield client
    finally:  # the test's event loop has ended: close its sockets without one
        client._core.abandon()


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "sandai: tests that use the sandai-operator-client testing kit")
