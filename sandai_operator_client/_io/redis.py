"""Redis connections on anyio byte streams: tcp, tls and unix sockets; AUTH and SELECT; pipelining.

One connection, no sharing policy: ``_core/command_channel.py`` multiplexes callers onto one by group
commit, ``_core/hub/`` uses one for pub/sub.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Deque, Iterable, List, Optional, Sequence, Tuple, Union
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import anyio.abc

from ..config import ConnectionPolicy
from ..protocol.resp import Arg, Command, RespError, RespProtocolError, RespReader, encode_pipeline
from .errors import ConnectionLost, interrupted
from .sockets import KeepAlive, SocketByteStream, connect_socket, set_keepalive

__all__ = (
    "MIN_IO",
    "REDIS_SCHEMES",
    "ConnectionLost",
    "RedisAddress",
    "RedisConnection",
    "interrupted",
    "keepalive_of",
    "parse_redis_url",
)

if TYPE_CHECKING:
    import ssl

ByteStream = Union[anyio.abc.ByteStream, SocketByteStream]
_CONNECTION_ERRORS = (
    OSError,
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    RespProtocolError,
)


@dataclass(frozen=True)
class RedisAddress:
    """Where and how to reach a Redis server (parsed from a URL)."""

    host: str = "localhost"
    port: int = 6379
    path: Optional[str] = None
    tls: bool = False
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    db: int = 0
    ssl_cert_reqs: str = "required"
    ssl_ca_certs: Optional[str] = None
    ssl_certfile: Optional[str] = None
    ssl_keyfile: Optional[str] = None
    ssl_check_hostname: bool = True

    def describe(self) -> str:
        """A password-free description for errors and logs."""
        where = f"unix://{self.path}" if self.path else f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}"
        return f"{where}/{self.db}"

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for ``rediss://`` (CA and client certificate options from the URL query)."""
        import ssl

        context = ssl.create_default_context(cafile=self.ssl_ca_certs)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        if self.ssl_cert_reqs == "none":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context.check_hostname = self.ssl_check_hostname
            context.verify_mode = ssl.CERT_OPTIONAL if self.ssl_cert_reqs == "optional" else ssl.CERT_REQUIRED
        return context


REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+socket")
"""The URL schemes of a Redis server."""


def parse_redis_url(url: str) -> RedisAddress:
    """Parse ``redis://``, ``rediss://`` and ``unix://`` URLs as redis-py and Celery do.

    ``redis://[[user]:password@]host[:port][/db]``; ``unix://[[user]:password@]/path/to.sock[?db=N]``;
    ``rediss://`` accepts ``ssl_cert_reqs`` (required|optional|none), ``ssl_ca_certs``, ``ssl_certfile``,
    ``ssl_keyfile`` and ``ssl_check_hostname`` in the query.
    """
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    try:
        if parts.scheme in ("unix", "redis+socket"):
            return RedisAddress(path=parts.path, username=username, password=password, db=int(query.get("db", 0)))
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"not a Redis URL scheme: {parts.scheme!r}")
        db_text = parts.path.lstrip("/") or query.get("db", "0")
        cert_reqs = query.get("ssl_cert_reqs", "required").lower().replace("cert_", "")
        return RedisAddress(
            host=parts.hostname or "localhost",
            port=parts.port or 6379,
            tls=parts.scheme == "rediss",
            username=username,
            password=password,
            db=int(db_text),
            ssl_cert_reqs=cert_reqs,
            ssl_ca_certs=query.get("ssl_ca_certs"),
            ssl_certfile=query.get("ssl_certfile"),
            ssl_keyfile=query.get("ssl_keyfile"),
            ssl_check_hostname=query.get("ssl_check_hostname", "true").lower() not in ("false", "0", "no"),
        )
    except ValueError as exc:
        raise ValueError(f"invalid Redis URL: {exc}") from None


def _hello_unknown(reply: RespError) -> bool:
    # Redis < 6 does not know HELLO; a server may also refuse protocol 3 (NOPROTO): both mean RESP2.
    message = reply.message.upper()
    return message.startswith("NOPROTO") or "UNKNOWN COMMAND" in message


class RedisConnection:
    """One connection: send encoded commands, read replies. Not shared without a lock or a channel."""

    def __init__(self, stream: ByteStream, address: RedisAddress) -> None:
        self._stream = stream
        self._reader = RespReader()
        self._parsed: Deque[object] = deque()  # replies read together but not handed out yet
        self.address = address
        self.resp3 = False  # the server switched to RESP3 (HELLO 3): commands work while subscribed
        # When bytes last went out or came in, on the monotonic clock (vDSO: no system call, unlike the
        # running loop's clock under asyncio 3.11, which asks getpid() to find the loop).
        self.last_io = time.monotonic()

    @classmethod
    async def open(
        cls, address: RedisAddress, timeout: float, *, resp3: bool = False, keepalive: Optional[KeepAlive] = None
    ) -> RedisConnection:
        """Connect, authenticate and select the database within ``timeout`` seconds.

        ``resp3``: ask for RESP3 (``HELLO 3``, Redis >= 6); a server that does not know it keeps RESP2
        (``conn.resp3`` tells which one was agreed). At least one command is exchanged (a PING when
        nothing else is needed), so a server that accepts and then refuses (``maxclients``) fails here,
        before any caller's command is written. ``keepalive``: TCP keepalive probe times.
        """
        try:
            with anyio.fail_after(timeout):
                stream: ByteStream
                if address.tls:
                    stream = await anyio.connect_tcp(
                        address.host, address.port, ssl_context=address.ssl_context(), tls_standard_compatible=False
                    )
                    set_keepalive(stream.extra(anyio.abc.SocketAttribute.raw_socket), keepalive)
                else:
                    stream = await connect_socket(address.host, address.port, address.path, keepalive)
                conn = cls(stream, address)
                setup: List[Command] = []
                if resp3:
                    hello: Tuple[Arg, ...] = ("HELLO", 3)
                    if address.password is not None:  # HELLO authenticates too
                        hello += ("AUTH", address.username or "default", address.password)
                    (reply,) = await conn.request([hello])
                    if isinstance(reply, RespError) and not _hello_unknown(reply):
                        await conn.aclose()
                        raise ConnectionLost(f"{address.describe()} refused the connection: {reply.message}")
                    conn.resp3 = not isinstance(reply, RespError)
                if address.password is not None and not conn.resp3:
                    setup.append(
                        ("AUTH", address.username, address.password) if address.username else ("AUTH", address.password)
                    )
                if address.db:
                    setup.append(("SELECT", address.db))
                if not setup and not resp3:
                    setup.append(("PING",))
                if setup:
                    replies = await conn.request(setup)
                    for reply in replies:
                        if isinstance(reply, RespError):
                            await conn.aclose()
                            raise ConnectionLost(f"{address.describe()} refused the connection: {reply.message}")
                return conn
        except TimeoutError:
            raise ConnectionLost(f"timed out connecting to {address.describe()} after {timeout:g}s") from None
        except _CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"cannot connect to {address.describe()}: {exc or type(exc).__name__}") from None

    def poll(self) -> List[object]:
        """The replies that arrived without waiting for any (none on TLS, which is not looked at);
        ``ConnectionLost`` when the server closed the connection or it failed."""
        stream = self._stream
        if not isinstance(stream, SocketByteStream):
            return []
        try:
            # Until nothing is left: replies the server sent before it closed come before the end of
            # the stream, which only the next receive reports.
            data = stream.receive_nowait()
            while data:
                self._reader.feed(data)
                data = stream.receive_nowait()
            self._parsed.extend(self._reader.replies())
        except _CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"lost connection to {self.address.describe()}: {exc or type(exc).__name__}") from None
        parsed, self._parsed = list(self._parsed), deque()
        return parsed

    async def send(self, data: bytes) -> None:
        """Write bytes; ``ConnectionLost`` when the connection is gone."""
        try:
            await self._stream.send(data)
        except _CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"lost connection to {self.address.describe()}: {exc or type(exc).__name__}") from None

    async def send_pieces(self, pieces: Iterable[bytes]) -> None:
        """Write ``pieces`` back to back (no other sender's bytes between them), each taken when the
        previous one is out; ``ConnectionLost`` when the connection is gone."""
        self.last_io = time.monotonic()
        stream = self._stream
        try:
            if isinstance(stream, SocketByteStream):
                await stream.send_pieces(pieces)
            else:  # TLS: a record cut short by a cancellation would break the stream
                with anyio.CancelScope(shield=True):
                    await stream.send(b"".join(pieces))
        except _CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"lost connection to {self.address.describe()}: {exc or type(exc).__name__}") from None

    async def read_reply(self) -> object:
        """The next reply. Bytes already received stay buffered if the caller is cancelled while waiting."""
        if not self._parsed:
            self._parsed.extend(await self.read_replies())
        return self._parsed.popleft()

    async def read_replies(self) -> List[object]:
        """Every reply that has arrived (at least one: waits for it), in order. Cancel-safe: bytes
        received stay buffered, replies parsed stay queued."""
        if self._parsed:
            parsed, self._parsed = list(self._parsed), deque()
            return parsed
        reader = self._reader
        try:
            while True:
                replies = reader.replies()
                if replies:
                    self.last_io = time.monotonic()
                    return replies
                reader.feed(await self._stream.receive())
        except _CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"lost connection to {self.address.describe()}: {exc or type(exc).__name__}") from None

    async def request(self, *batches: Sequence[Command]) -> List[object]:
        """Send the commands of ``batches``, back to back, as one pipeline and read one reply each.

        Rule: a long pipeline is never held encoded all at once; it goes out in pieces, encoded as it is
        sent (the batch budget in tests/faults/test_budgets.py measures the peak).
        """
        await self.send_pieces(encode_pipeline(chain(*batches)))
        due = sum(map(len, batches))
        replies: List[object] = []
        while len(replies) < due:
            replies += await self.read_replies()
        if len(replies) > due:  # replies to what somebody sends next: they stay queued
            self._parsed.extend(replies[due:])
            del replies[due:]
        return replies

    def abandon(self) -> None:
        """Close the socket at once, outside any event loop (never raises; nobody may be waiting on it)."""
        try:
            if isinstance(self._stream, SocketByteStream):
                self._stream.abandon()
            else:  # a TLS stream: its socket underneath
                self._stream.extra(anyio.abc.SocketAttribute.raw_socket).close()
        except Exception:
            pass

    async def aclose(self) -> None:
        """Close the socket (never raises)."""
        with anyio.CancelScope(shield=True):
            try:
                await self._stream.aclose()
            except Exception:
                pass


MIN_IO = 1.0
"""Seconds a pipeline may always take, whatever its callers' deadlines."""


def keepalive_of(policy: ConnectionPolicy) -> Optional[KeepAlive]:
    """The TCP keepalive probe times of ``policy`` (None: keepalive off)."""
    if policy.keepalive_idle is None:
        return None
    return KeepAlive(policy.keepalive_idle, policy.keepalive_interval, policy.keepalive_count)
