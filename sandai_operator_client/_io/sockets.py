"""A lean byte stream over a non-blocking socket, for plain TCP and unix connections.

anyio's ``SocketStream`` yields to the event loop on every send and receive (a checkpoint), which costs
a full loop iteration each time; on the hot path of a call that is most of the client's CPU. Here a send
that fits in the kernel buffer completes without yielding, and a receive first tries the socket and only
waits (``anyio.wait_readable``: asyncio and trio alike) when nothing is there. Waiting is cancellable
and loses nothing: bytes are only read once they are there. TLS keeps anyio's ``TLSStream``.
"""

from __future__ import annotations

import errno
import os
import socket
from collections import deque
from typing import Any, Deque, Iterable, Iterator, List, NamedTuple, Optional, Tuple, Union

import anyio

__all__ = ("KeepAlive", "SocketByteStream", "connect_socket", "set_keepalive")

_RECEIVE_SIZE = 65536


class KeepAlive(NamedTuple):
    """TCP keepalive probe times: first probe after ``idle`` s without traffic, then every ``interval`` s;
    the connection fails after ``probes`` unanswered probes."""

    idle: float
    interval: float
    probes: int


def set_keepalive(sock: socket.socket, keepalive: Optional[KeepAlive]) -> None:
    """Turn TCP keepalive on with ``keepalive``'s probe times, where the platform allows setting them."""
    if keepalive is None or sock.family == socket.AF_UNIX:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", keepalive.idle),
        ("TCP_KEEPINTVL", keepalive.interval),
        ("TCP_KEEPCNT", keepalive.probes),
    ):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), max(1, int(value)))


class SocketByteStream:
    """``send``/``send_pieces``/``receive``/``aclose`` over a connected non-blocking socket (one reader at
    a time; senders are served in order, each one's bytes together)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        # What the kernel did not take yet, in order. Rule: views of the senders' own bytes, never copies
        # (a long pipeline's unsent rest would be held twice).
        self._backlog: Optional[Deque[memoryview]] = None
        self._drained: Optional[anyio.Event] = None
        self._error: Optional[BaseException] = None

    async def send(self, data: bytes) -> None:
        """Write all of ``data``; concurrent senders queue behind a partial write, in order.

        ``data`` must not change until this returns (it is sent from where it lies).
        """
        if self._error is not None:
            raise self._error
        if self._backlog is not None:
            self._backlog.append(memoryview(data))
            await self._queued()
            return
        sent = self._try_send(data)
        if sent != len(data):
            await self._drain(memoryview(data)[sent:], iter(()))

    async def send_pieces(self, pieces: Iterable[bytes]) -> None:
        """Write ``pieces`` back to back, nobody else's bytes between them, taking each piece only when
        the previous one is out (a lazily encoded pipeline is never held whole)."""
        if self._error is not None:
            raise self._error
        if self._backlog is not None:  # behind another sender: queued whole, so encoded now
            self._backlog.extend(memoryview(piece) for piece in pieces)
            await self._queued()
            return
        more = iter(pieces)
        for piece in more:
            sent = self._try_send(piece)
            if sent != len(piece):
                await self._drain(memoryview(piece)[sent:], more)
                return

    async def _queued(self) -> None:
        drained = self._drained
        assert drained is not None
        await drained.wait()
        if self._error is not None:
            raise self._error

    async def _drain(self, view: memoryview, more: Iterator[bytes]) -> None:
        """Finish ``view``, then ``more`` (the same sender's), then what others queued meanwhile."""
        backlog: Deque[memoryview] = deque()
        self._backlog = backlog
        self._drained = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):  # a half-written command must be finished
                while True:
                    while view:
                        await anyio.wait_writable(self._sock)
                        view = view[self._try_send(view) :]
                    piece = next(more, None)
                    if piece is not None:
                        view = memoryview(piece)[self._try_send(piece) :]
                    elif backlog:
                        view = backlog.popleft()
                    else:
                        break
        except BaseException as exc:
            # The stream is broken for good (a command may be half written): every queued and later
            # sender gets a connection error, never the interrupting exception itself.
            self._error = (
                exc
                if isinstance(exc, OSError)
                else anyio.BrokenResourceError(f"a write was interrupted ({type(exc).__name__})")
            )
            raise
        finally:
            self._backlog = None
            self._drained.set()

    def _try_send(self, data: Union[bytes, memoryview]) -> int:
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0

    def receive_nowait(self) -> bytes:
        """The bytes already received (b"" when none); ``anyio.EndOfStream`` when the peer closed."""
        try:
            data = self._sock.recv(_RECEIVE_SIZE)
        except BlockingIOError:
            return b""
        if not data:
            raise anyio.EndOfStream
        return data

    async def receive(self) -> bytes:
        """Bytes from the socket; ``anyio.EndOfStream`` when the peer closed."""
        while True:
            try:
                data = self._sock.recv(_RECEIVE_SIZE)
            except BlockingIOError:
                await anyio.wait_readable(self._sock)
                continue
            if not data:
                raise anyio.EndOfStream
            return data

    def abandon(self) -> None:
        """Close the socket at once, outside any event loop (nobody may be waiting on it)."""
        self._sock.close()

    async def aclose(self) -> None:
        """Close the socket, waking any task waiting on it."""
        try:
            anyio.notify_closing(self._sock)
        except Exception:
            pass
        self._sock.close()


async def connect_socket(
    host: Optional[str], port: int, path: Optional[str], keepalive: Optional[KeepAlive] = None
) -> SocketByteStream:
    """Connect a TCP (``host``/``port``) or unix (``path``) socket without blocking the event loop."""
    candidates: List[Tuple[int, Any]]
    if path:
        candidates = [(socket.AF_UNIX, path)]
    else:
        infos = await anyio.getaddrinfo(host or "localhost", port, type=socket.SOCK_STREAM)
        candidates = [(family, addr) for family, _, _, _, addr in infos]
    last_error: Optional[OSError] = None
    for family, addr in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            err = sock.connect_ex(addr)
            if err in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
                await anyio.wait_writable(sock)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
            if family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                set_keepalive(sock, keepalive)
            return SocketByteStream(sock)
        except BaseException as exc:
            sock.close()
            if not isinstance(exc, OSError):
                raise
            last_error = exc
    raise last_error or OSError("no address to connect to")
