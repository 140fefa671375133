"""RESP, the Redis wire protocol: command encoding and an incremental reply reader (sans-IO).

Commands are arrays of bulk strings. The reader takes RESP2 replies (simple strings, errors, integers,
bulk strings, arrays, nulls: what every Redis >= 2 and every proxy speaks) and the RESP3 types a
connection gets after ``HELLO 3`` (Redis >= 6): out-of-band pushes (pub/sub messages and subscription
confirmations, returned as :class:`Push` so a reader can tell them from command replies), maps, sets,
nulls, booleans, doubles, big numbers, verbatim strings and blob errors; attributes are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional, Protocol, Tuple, Union

__all__ = (
    "Command",
    "MAX_BULK",
    "MAX_DEPTH",
    "NEED_DATA",
    "PIECE_SIZE",
    "Push",
    "RespError",
    "RespProtocolError",
    "RespReader",
    "encode_command",
    "encode_commands",
    "encode_pipeline",
)

Arg = Union[bytes, str, int, float]


class Command(Protocol):
    """A command as the encoder reads it: how many arguments, then each in order. A tuple is one; so is
    an object that makes its arguments only as they are encoded (a batch's LPUSH, its keys' DEL)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Arg]: ...


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


def _add_command(parts: List[bytes], args: Command) -> None:
    """Append ``args``'s encoding to ``parts`` (joined once, at the end: an envelope is a kilobyte or more)."""
    parts.append(b"*%d\r\n" % len(args))
    for arg in args:
        _add_arg(parts, arg)


def encode_command(*args: Arg) -> bytes:
    """Encode one command as a RESP array of bulk strings."""
    parts: List[bytes] = []
    _add_command(parts, args)
    return b"".join(parts)


def encode_commands(commands: Iterable[Command]) -> bytes:
    """Encode several commands back to back (a pipeline)."""
    parts: List[bytes] = []
    for command in commands:
        _add_command(parts, command)
    return b"".join(parts)


PIECE_SIZE = 65536
"""How many bytes of a long pipeline are encoded (and written) at a time."""


def encode_pipeline(commands: Iterable[Command], piece_size: int = PIECE_SIZE) -> Iterator[bytes]:
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


class _Aggregate:
    """An aggregate reply being read: what it still needs and what it has (a frame of the reader's stack)."""

    __slots__ = ("items", "kind", "remaining")

    def __init__(self, kind: int, remaining: int, items: List[object]) -> None:
        self.kind, self.remaining, self.items = kind, remaining, items


MAX_DEPTH = 64
"""How deeply aggregates may nest in one reply (Redis's own replies nest two or three levels)."""

MAX_BULK = 512 * 1024 * 1024
"""The longest bulk string accepted (Redis's own ``proto-max-bulk-len`` default)."""

_AGGREGATE_TYPES = frozenset(b"*>%~|")


class RespReader:
    """Incremental RESP2/RESP3 reply parser: ``feed()`` bytes, then ``replies()`` (or ``next_reply()``).

    Rules that must stay true (tests in ``tests/test_protocol_units.py``):

    * Linear time: however the bytes are cut, each is examined a bounded number of times. An incomplete
      aggregate is kept as parse state (a stack of ``_Aggregate`` frames holding the elements read so
      far), never re-parsed from its first element when more bytes come; consumed bytes are dropped
      from the buffer at the next ``feed``. ``steps`` counts the values parsed, for tests to assert on.
    * Every malformed input raises :class:`RespProtocolError` (never ``ValueError``, ``TypeError``,
      ``RecursionError``...), and so does every later call: the stream cannot be trusted any more, the
      connection must be dropped.
    * Aggregates nest at most ``max_depth`` levels; nothing recurses, whatever the input.
    """

    __slots__ = ("_buf", "_error", "_pos", "_scan", "_stack", "max_depth", "steps")

    def __init__(self, max_depth: int = MAX_DEPTH) -> None:
        self._buf: Union[bytes, bytearray] = b""
        self._pos = 0  # where the next value starts
        self._scan = 0  # where the search for the end of the line at _pos goes on (a long line, in pieces)
        self._stack: List[_Aggregate] = []  # the aggregates being read, outermost first
        self._error: Optional[RespProtocolError] = None
        self.max_depth = max_depth
        self.steps = 0

    def feed(self, data: bytes) -> None:
        """Append bytes received from the server."""
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            # All consumed (the usual case): read the new bytes where they are, no copy.
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = self._scan = 0
            return
        # Something is incomplete: keep its bytes (only those) in a bytearray, whose appends do not copy.
        if type(buf) is bytearray:
            if pos:
                del buf[:pos]
        else:
            buf = self._buf = bytearray(memoryview(buf)[pos:])
        self._scan = max(self._scan - pos, 0)
        self._pos = 0
        buf += data

    def replies(self) -> List[object]:
        """Every complete reply buffered now, in order (empty when none is complete yet)."""
        out: List[object] = []
        self._read(out, False)
        return out

    def next_reply(self) -> object:
        """Return the next complete reply, or ``NEED_DATA``; raises :class:`RespProtocolError` on garbage."""
        out: List[object] = []
        self._read(out, True)
        return out[0] if out else NEED_DATA

    def _read(self, out: List[object], one: bool) -> None:
        if self._error is not None:
            raise self._error
        try:
            self._parse(out, one)
        except RespProtocolError as exc:
            self._error = exc
            raise
        except (ValueError, IndexError, TypeError, UnicodeDecodeError) as exc:
            self._error = RespProtocolError(f"malformed RESP reply: {exc}")
            raise self._error from exc

    def _parse(self, out: List[object], one: bool) -> None:
        buf, pos, stack = self._buf, self._pos, self._stack
        size = len(buf)
        steps = 0
        value: object
        try:
            if stack and stack[-1].remaining:
                frame = stack[-1]
                pos, remaining = _fill(buf, pos, frame.items, frame.remaining)
                steps += frame.remaining - remaining
                frame.remaining = remaining
            while True:
                if stack and not stack[-1].remaining:
                    frame = stack.pop()
                    value = _finish(frame.kind, frame.items)
                elif pos >= size:
                    return
                else:
                    end = buf.find(b"\r\n", max(pos, self._scan))
                    if end < 0:
                        self._scan = max(pos, size - 1)  # a long line arriving in pieces is searched once
                        return
                    kind = buf[pos]
                    steps += 1
                    if kind == 0x24 or kind == 0x3D or kind == 0x21:  # $ bulk, = verbatim string, ! blob error
                        n = int(buf[pos + 1 : end])
                        start = end + 2
                        if n == -1:
                            value, pos = None, start
                        elif n < 0 or n > MAX_BULK:
                            raise RespProtocolError(f"invalid bulk length {n}")
                        else:
                            stop = start + n
                            if size < stop + 2:
                                return
                            if buf[stop : stop + 2] != b"\r\n":
                                raise RespProtocolError("bulk string not terminated by CRLF")
                            data = bytes(buf[start:stop])
                            pos = stop + 2
                            if kind == 0x24:
                                value = data
                            elif kind == 0x3D:
                                value = data[4:]  # drop the "txt:" format prefix
                            else:
                                value = RespError(data.decode(errors="replace"))
                    elif kind in _AGGREGATE_TYPES:  # * array, > push, % map, ~ set, | attribute
                        n = int(buf[pos + 1 : end])
                        pos = end + 2
                        if n == -1 and (kind == 0x2A or kind == 0x3E):
                            value = None
                        elif n < 0:
                            raise RespProtocolError(f"invalid aggregate length {n}")
                        elif len(stack) >= self.max_depth:
                            raise RespProtocolError(f"aggregates nested more than {self.max_depth} deep")
                        else:
                            items: List[object] = Push() if kind == 0x3E else []
                            count = n if kind != 0x25 and kind != 0x7C else 2 * n
                            pos, remaining = _fill(buf, pos, items, count)
                            steps += count - remaining
                            if remaining:
                                stack.append(_Aggregate(kind, remaining, items))
                                continue
                            value = _finish(kind, items)
                    elif kind == 0x3A or kind == 0x28:  # : integer, ( big number
                        value, pos = int(buf[pos + 1 : end]), end + 2
                    elif kind == 0x2B:  # + simple string
                        value, pos = buf[pos + 1 : end].decode(), end + 2
                    elif kind == 0x2D:  # - error
                        value, pos = RespError(buf[pos + 1 : end].decode(errors="replace")), end + 2
                    elif kind == 0x5F and end == pos + 1:  # _ null
                        value, pos = None, end + 2
                    elif kind == 0x23 and end == pos + 2 and buf[pos + 1] in b"tf":  # # boolean
                        value, pos = buf[pos + 1] == 0x74, end + 2
                    elif kind == 0x2C:  # , double
                        value, pos = float(buf[pos + 1 : end]), end + 2
                    else:
                        raise RespProtocolError(f"unexpected RESP line {bytes(buf[pos : min(end, pos + 20)])!r}")
                # A value is complete: an element of the innermost aggregate, or a reply.
                if value is _ATTRIBUTE:
                    continue
                if stack:
                    frame = stack[-1]
                    frame.items.append(value)
                    if frame.remaining > 1:
                        pos, remaining = _fill(buf, pos, frame.items, frame.remaining - 1)
                        steps += frame.remaining - 1 - remaining
                        frame.remaining = remaining
                    else:
                        frame.remaining = 0
                    continue
                out.append(value)
                if one:
                    return
        finally:  # what is parsed stays parsed: the stack holds it, the buffer drops it at the next feed
            self._pos = pos
            self.steps += steps


def _fill(buf: Union[bytes, bytearray], pos: int, items: List[object], remaining: int) -> Tuple[int, int]:
    """Read the bulk-string and integer elements of an aggregate that are complete at ``pos`` into
    ``items``, in one tight loop (pub/sub traffic and MGET replies are nothing else); where the next
    element starts, and how many elements are still to come. Anything else is left to the general path."""
    size = len(buf)
    while remaining and pos < size:
        kind = buf[pos]
        if kind != 0x24 and kind != 0x3A:
            break
        end = buf.find(b"\r\n", pos, pos + 24)  # a length or integer line is short
        if end < 0:
            break  # incomplete (or garbage, which the general path reports)
        if kind == 0x3A:
            items.append(int(buf[pos + 1 : end]))
            pos = end + 2
        else:
            length = int(buf[pos + 1 : end])
            if length < 0 or length > MAX_BULK:
                break
            start = end + 2
            stop = start + length
            if size < stop + 2:
                break
            if buf[stop : stop + 2] != b"\r\n":
                raise RespProtocolError("bulk string not terminated by CRLF")
            items.append(bytes(buf[start:stop]))
            pos = stop + 2
        remaining -= 1
    return pos, remaining


def _finish(kind: int, items: List[object]) -> object:
    """The value of a complete aggregate."""
    if kind == 0x25:  # % map
        return dict(zip([_map_key(key) for key in items[::2]], items[1::2]))
    if kind == 0x7C:  # | attribute: annotates the value that follows; skipped
        return _ATTRIBUTE
    return items


_ATTRIBUTE = object()  # what a finished attribute aggregate stands for: no value at all


def _map_key(key: object) -> object:
    if isinstance(key, bytes):
        return key.decode(errors="replace")
    if key is None or isinstance(key, (str, int, float, bool, RespError)):
        return key
    raise RespProtocolError(f"map key of type {type(key).__name__} is not a scalar")
