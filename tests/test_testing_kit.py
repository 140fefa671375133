"""The pytest plugin as a user's suite meets it: free when unused, async fixtures under anyio and
pytest-asyncio (strict and auto), name/version overrides, environment pointed at the fake."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]


def test_the_plugin_loads_neither_the_client_nor_the_fake() -> None:
    code = (
        "import sys, sandai_operator_client.testing.pytest_plugin\n"
        "heavy = [m for m in sys.modules if m.startswith('sandai_operator_client.') and m.split('.')[1] in "
        "('_sync', '_async', '_core')]\n"
        "heavy += [m for m in sys.modules if m.endswith('fake_operator')]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


USER_TESTS = """
import pytest
from sandai_operator_client import create_client


@pytest.fixture
def sandai_operator_version():
    return "v7"


{marker}
async def test_async_client(async_operator_client, fake_operator):
    artifacts, results = await async_operator_client.sync([], {{"text": "hi"}})
    assert results["echo"] == "hi" and fake_operator.version == "v7"
    fake_operator.assert_received(1, text="hi")


def test_own_client_from_the_environment(sandai_operator_env):
    with create_client(sandai_operator_env.name, "v7") as client:
        assert client.sync([], {{"text": "env"}})[1]["echo"] == "env"
"""


@pytest.mark.parametrize(
    "runner, marker",
    [
        (["-p", "anyio", "-p", "no:asyncio"], "@pytest.mark.anyio"),
        (["-p", "asyncio", "-o", "asyncio_mode=strict"], "@pytest.mark.asyncio"),
        (["-p", "asyncio", "-o", "asyncio_mode=auto"], ""),
    ],
    ids=["anyio", "pytest-asyncio-strict", "pytest-asyncio-auto"],
)
def test_async_fixtures_work_under_every_runner(pytester: pytest.Pytester, runner: list, marker: str) -> None:
    pytester.makepyfile(USER_TESTS.format(marker=marker))
    pytester.makeconftest("@__import__('pytest').fixture\ndef anyio_backend():\n    return 'asyncio'\n")
    result = pytester.runpytest_subprocess(*runner, "-o", "asyncio_default_fixture_loop_scope=function", "-q")
    result.assert_outcomes(passed=2)
