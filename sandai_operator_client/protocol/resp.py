"""RESP, the Redis wire protocol: command encoding and an incremental reply reader (sans-IO).

Commands are arrays of bulk strings. The reader takes RESP2 replies (simple strings, errors, integers,
bulk strings, arrays, nulls: what every Redis >= 2 and every proxy speaks) and the RESP3 types a
connection gets after ``HELLO 3`` (Redis >= 6): out-of-band pushes (pub/sub messages and subscription
confirmations, returned as :class:`Push` so a reader can tell them from command replies), maps, sets,
nulls, booleans, doubles, big numbers, verbatim strings and blob errors; attributes are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, List, Sequence, Union

__all__ = ("NEED_DATA", "PIECE_SIZE", "Push", "RespError", "RespProtocolError", "RespReader", "encode_command",
           "encode_commands", "encode_pipeline")

Arg = Union[bytes, str, int, float]


@dataclass(frozen=True)
class RespError:
    """An error reply (``-ERR ...``): a value, not an exception, so a pipeline keeps its other replies."""

    message: str


class RespProtocolError(Exception):
    """The server sent bytes that are not RESP."""


class Push(list):  # type: ignore[type-arg]
    """A RESP3 push (``>``): data the server sends on its own, not the reply to a command."""


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()
"""Returned by :meth:`RespReader.next_reply` when the buffered bytes hold no complete reply yet."""


def _as_bytes(arg: Arg) -> bytes:
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
    return data


def _add_arg(parts: List[bytes], arg: Arg) -> int:
    """Append one argument's encoding to ``parts``; its size in bytes."""
    data = arg.encode() if type(arg) is str else arg if type(arg) is bytes else _as_bytes(arg)
    header = b"$%d\r\n" % len(data)
    parts += (header, data, b"\r\n")
    return len(header) + len(data) + 2


def _add_command(parts: List[bytes], args: Sequence[Arg]) -> None:
    """Append ``args``'s encoding to ``parts`` (joined once, at the end: an envelope is a kilobyte or more)."""
    parts.append(b"*%d\r\n" % len(args))
    for arg in args:
        _add_arg(parts, arg)


def encode_command(*args: Arg) -> bytes:
    """Encode one command as a RESP array of bulk strings."""
    parts: List[bytes] = []
    _add_command(parts, args)
    return b"".join(parts)


def encode_commands(commands: Iterable[Sequence[Arg]]) -> bytes:
    """Encode several commands back to back (a pipeline)."""
    parts: List[bytes] = []
    for command in commands:
        _add_command(parts, command)
    return b"".join(parts)


PIECE_SIZE = 65536
"""How many bytes of a long pipeline are encoded (and written) at a time."""


def encode_pipeline(commands: Iterable[Sequence[Arg]], piece_size: int = PIECE_SIZE) -> Iterator[bytes]:
    """Encode a pipeline lazily, in pieces of about ``piece_size`` bytes, so that a long pipeline is never
    held encoded all at once. A piece ends after a command, or inside a long one after an argument (one
    LPUSH of a batch's envelopes is megabytes; its arguments are read only as their piece is made)."""
    parts: List[bytes] = []
    size = 0
    for command in commands:
        header = b"*%d\r\n" % len(command)
        parts.append(header)
        size += len(header)
        for arg in command:
            size += _add_arg(parts, arg)
            if size >= piece_size:
                yield b"".join(parts)
                parts, size = [], 0
    if parts:
        yield b"".join(parts)


class RespReader:
    """Incremental RESP2/RESP3 reply parser: ``feed()`` bytes, then call ``next_reply()`` until ``NEED_DATA``."""

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf: Union[bytes, bytearray] = b""
        self._pos = 0

    def feed(self, data: bytes) -> None:
        """Append bytes received from the server."""
        if self._pos >= len(self._buf):
            # All consumed (the usual case): read the new bytes where they are. Bulk strings sliced
            # from a bytes buffer are copied once; from a bytearray, twice.
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = 0
            return
        # A reply is incomplete: accumulate in a bytearray, whose appends do not copy what is there.
        if type(self._buf) is bytearray:
            if self._pos:
                del self._buf[: self._pos]
        else:
            self._buf = bytearray(memoryview(self._buf)[self._pos :])
        self._pos = 0
        self._buf += data

    def replies(self) -> List[object]:
        """Every complete reply buffered now, in order (empty when none is complete yet)."""
        out: List[object] = []
        while True:
            reply = self.next_reply()
            if reply is NEED_DATA:
                return out
            out.append(reply)

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
        if kind == 0x2A or kind == 0x3E:  # * array, > push
            n = int(buf[pos + 1 : end])
            if n < 0:
                return None, nxt
            items: List[object] = [] if kind == 0x2A else Push()
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
                if nxt < size and buf[nxt] == 0x3A:  # an integer element (subscription counts), inline
                    end = buf.find(b"\r\n", nxt)
                    if end < 0:
                        return NEED_DATA
                    items.append(int(buf[nxt + 1 : end]))
                    nxt = end + 2
                    continue
                result = self._parse(nxt)
                if result is NEED_DATA:
                    return NEED_DATA
                item, nxt = result  # type: ignore[misc]
                items.append(item)  # type: ignore[has-type]
            return items, nxt
        if kind == 0x24 or kind == 0x3D or kind == 0x21:  # $ bulk string, = verbatim string, ! blob error
            n = int(buf[pos + 1 : end])
            if n < 0:
                return None, nxt
            if len(buf) < nxt + n + 2:
                return NEED_DATA
            data = bytes(buf[nxt : nxt + n])
            if kind == 0x3D:
                return data[4:], nxt + n + 2  # drop the "txt:" format prefix
            if kind == 0x21:
                return RespError(data.decode(errors="replace")), nxt + n + 2
            return data, nxt + n + 2
        if kind == 0x3A or kind == 0x28:  # : integer, ( big number
            return int(buf[pos + 1 : end]), nxt
        if kind == 0x2B:  # + simple string
            return buf[pos + 1 : end].decode(), nxt
        if kind == 0x2D:  # - error
            return RespError(buf[pos + 1 : end].decode(errors="replace")), nxt
        if kind == 0x5F:  # _ null
            return None, nxt
        if kind == 0x23:  # # boolean
            return buf[pos + 1 : end] == b"t", nxt
        if kind == 0x2C:  # , double
            return float(buf[pos + 1 : end]), nxt
        if kind == 0x25 or kind == 0x7E or kind == 0x7C:  # % map, ~ set, | attribute
            n = int(buf[pos + 1 : end])
            values: List[object] = []
            for _ in range(2 * n if kind != 0x7E else n):
                result = self._parse(nxt)
                if result is NEED_DATA:
                    return NEED_DATA
                value, nxt = result  # type: ignore[misc]
                values.append(value)  # type: ignore[has-type]
            if kind == 0x7E:
                return values, nxt
            if kind == 0x7C:  # attributes annotate the reply that follows: skip them
                return self._parse(nxt)
            return {_map_key(k): v for k, v in zip(values[::2], values[1::2])}, nxt
        raise RespProtocolError(f"unexpected RESP type byte {bytes([kind])!r}")


def _map_key(key: object) -> object:
    return key.decode(errors="replace") if isinstance(key, bytes) else key
