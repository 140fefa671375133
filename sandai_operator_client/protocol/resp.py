"""RESP2, the Redis wire protocol: command encoding and an incremental reply reader (sans-IO).

Only what the client speaks is here: commands are arrays of bulk strings; replies are simple strings,
errors, integers, bulk strings, arrays and nulls (RESP2, which every Redis >= 2 and every proxy speaks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Union

__all__ = ("NEED_DATA", "RespError", "RespProtocolError", "RespReader", "encode_command", "encode_commands")

Arg = Union[bytes, str, int, float]


@dataclass(frozen=True)
class RespError:
    """An error reply (``-ERR ...``): a value, not an exception, so a pipeline keeps its other replies."""

    message: str


class RespProtocolError(Exception):
    """The server sent bytes that are not RESP2."""


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()
"""Returned by :meth:`RespReader.next_reply` when the buffered bytes hold no complete reply yet."""


def _bulk(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        data = arg
    elif isinstance(arg, str):
        data = arg.encode()
    elif isinstance(arg, bool):  # bool is an int: refuse the ambiguity instead of sending "True"
        raise TypeError("RESP argument cannot be a bool")
    elif isinstance(arg, (int, float)):
        data = repr(arg).encode()
    else:
        raise TypeError(f"RESP argument must be bytes, str, int or float, not {type(arg).__name__}")
    return b"$%d\r\n%b\r\n" % (len(data), data)


def encode_command(*args: Arg) -> bytes:
    """Encode one command as a RESP array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(_bulk(a) for a in args)


def encode_commands(commands: Iterable[Iterable[Arg]]) -> bytes:
    """Encode several commands back to back (a pipeline)."""
    return b"".join(encode_command(*cmd) for cmd in commands)


class RespReader:
    """Incremental RESP2 reply parser: ``feed()`` bytes, then call ``next_reply()`` until ``NEED_DATA``."""

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        """Append bytes received from the server."""
        if self._pos >= len(self._buf):  # all consumed: start afresh (a bytearray never gives memory back)
            self._buf = bytearray(data)
            self._pos = 0
            return
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_reply(self) -> object:
        """Return the next complete reply, or ``NEED_DATA``; raises :class:`RespProtocolError` on garbage."""
        try:
            result = self._parse(self._pos)
        except (ValueError, IndexError) as exc:
            raise RespProtocolError(f"malformed RESP reply: {exc}") from exc
        if result is NEED_DATA:
            return NEED_DATA
        value, self._pos = result  # type: ignore[misc]
        return value  # type: ignore[has-type]

    def _parse(self, pos: int) -> object:
        # Flat on purpose: pub/sub traffic is arrays of bulk strings, parsed here without recursion.
        buf = self._buf
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return NEED_DATA
        kind = buf[pos]
        nxt = end + 2
        if kind == 0x2A:  # * array
            n = int(buf[pos + 1 : end])
            if n < 0:
                return None, nxt
            items: List[object] = []
            size = len(buf)
            for _ in range(n):
                if nxt < size and buf[nxt] == 0x24:  # a bulk string element, inline
                    end = buf.find(b"\r\n", nxt)
                    if end < 0:
                        return NEED_DATA
                    length = int(buf[nxt + 1 : end])
                    if length < 0:
                        items.append(None)
                        nxt = end + 2
                        continue
                    start = end + 2
                    nxt = start + length + 2
                    if size < nxt:
                        return NEED_DATA
                    items.append(bytes(buf[start : start + length]))
                    continue
                result = self._parse(nxt)
                if result is NEED_DATA:
                    return NEED_DATA
                item, nxt = result  # type: ignore[misc]
                items.append(item)  # type: ignore[has-type]
            return items, nxt
        if kind == 0x24:  # $ bulk string
            n = int(buf[pos + 1 : end])
            if n < 0:
                return None, nxt
            if len(buf) < nxt + n + 2:
                return NEED_DATA
            return bytes(buf[nxt : nxt + n]), nxt + n + 2
        if kind == 0x3A:  # : integer
            return int(buf[pos + 1 : end]), nxt
        if kind == 0x2B:  # + simple string
            return buf[pos + 1 : end].decode(), nxt
        if kind == 0x2D:  # - error
            return RespError(buf[pos + 1 : end].decode(errors="replace")), nxt
        raise RespProtocolError(f"unexpected RESP type byte {bytes([kind])!r}")
