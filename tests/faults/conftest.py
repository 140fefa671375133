"""Private Redis servers the fault tests start, stop and restart on their own ports."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence

import pytest


@contextmanager
def operator_process(name: str, url: str, *args: str, **popen: Any) -> Iterator[subprocess.Popen[str]]:
    """A fake operator in a process of its own (``python -m ...testing.fake_operator``), from the moment
    it says it is ready until the block ends."""
    operator = subprocess.Popen(
        [sys.executable, "-m", "sandai_operator_client.testing.fake_operator", name, "v1", url, *args],
        stdout=subprocess.PIPE,
        text=True,
        **popen,
    )
    try:
        assert operator.stdout is not None and "ready" in operator.stdout.readline()
        yield operator
    finally:
        operator.terminate()
        operator.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of the test's own: AOF on (fsync always) so data survives a restart."""

    def __init__(
        self,
        workdir: Path,
        *,
        password: Optional[str] = None,
        tls_dir: Optional[Path] = None,
        unix: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (make test installs it)", pytrace=False)
        self.binary, self.workdir, self.password, self.tls_dir = binary, workdir, password, tls_dir
        self.port = free_port()
        self.socket_path = workdir / "redis.sock" if unix else None
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.extra_args = list(extra_args)

    def _args(self) -> List[str]:
        args = [
            self.binary,
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--logfile",
            str(self.workdir / "redis.log"),
        ]
        if self.tls_dir:
            args += [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.tls_dir / "server.pem"),
                "--tls-key-file",
                str(self.tls_dir / "server.key"),
                "--tls-ca-cert-file",
                str(self.tls_dir / "ca.pem"),
                "--tls-auth-clients",
                "no",
            ]
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        if self.socket_path:
            args += ["--unixsocket", str(self.socket_path)]
        return args + self.extra_args

    def start(self) -> None:
        self.proc = subprocess.Popen(self._args())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        pytest.fail(f"private redis did not start: {(self.workdir / 'redis.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: Redis flushes the AOF and exits
            self.proc.wait(10)
            self.proc = None

    def restart(self, down_for: float = 0.3) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.socket_path:
            return f"unix://{auth}{self.socket_path}?db=0"
        if self.tls_dir:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls_dir / 'ca.pem'}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a server certificate for 127.0.0.1, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make TLS test certificates", pytrace=False)
    d = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=sandai-test-ca",
    )
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )
    return d
