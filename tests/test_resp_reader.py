"""The RESP reader on hostile, deep and large input: protocol errors only, linear time, no recursion."""

from __future__ import annotations

from typing import Any, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandai_operator_client.protocol.resp import MAX_DEPTH, NEED_DATA, RespError, RespProtocolError, RespReader

HOSTILE = [
    b"%1\r\n*0\r\n:1\r\n",  # a map whose key is an aggregate (unhashable)
    b"%1\r\n%0\r\n:1\r\n",
    b"*" * 1 + b"1\r\n" + b"*1\r\n" * 5000 + b":1\r\n",  # nesting far beyond the limit
    b">1\r\n" * 2000,
    b"$-2\r\n",
    b"$3\r\nabcd\r\n",  # a bulk string longer than its length
    b"*-5\r\n",
    b"%-1\r\n",
    b"#x\r\n",
    b"_junk\r\n",
    b",notafloat\r\n",
    b":1_0x\r\n",
    b"$99999999999999\r\n",
    b"?\r\n",
    b"+ok\r\n\x00\r\n",
]


@pytest.mark.parametrize("wire", HOSTILE)
def test_malformed_input_raises_the_protocol_error_and_keeps_raising(wire: bytes) -> None:
    reader = RespReader()
    reader.feed(wire)
    with pytest.raises(RespProtocolError):
        for _ in range(10):
            reader.replies()
    reader.feed(b":1\r\n")  # the stream cannot be trusted any more: nothing is read from it again
    with pytest.raises(RespProtocolError):
        reader.replies()


def test_nesting_up_to_the_limit_is_read_without_recursion() -> None:
    depth = MAX_DEPTH
    reader = RespReader()
    reader.feed(b"*1\r\n" * depth + b":7\r\n")
    value: Any = reader.next_reply()
    for _ in range(depth):
        value = value[0]
    assert value == 7
    deeper = RespReader()
    deeper.feed(b"*1\r\n" * (depth + 1) + b":7\r\n")
    with pytest.raises(RespProtocolError):
        deeper.next_reply()


def _mget_reply(count: int, size: int) -> bytes:
    value = b"x" * size
    return b"*%d\r\n" % count + (b"$%d\r\n%s\r\n" % (size, value)) * count


@pytest.mark.parametrize("count", [25, 50, 100])
def test_a_large_array_reply_costs_steps_linear_in_its_size(count: int) -> None:
    # 100 ready results of 1 MB (one MGET) arrive 64 KB at a time: the elements already read are kept,
    # never parsed again, so the work grows with the bytes (each 64 KB read looks at one incomplete
    # element once), not with their square
    wire = _mget_reply(count, 1_000_000)
    reader = RespReader()
    replies: List[object] = []
    reads = 0
    for start in range(0, len(wire), 65536):
        reader.feed(wire[start : start + 65536])
        reads += 1
        replies += reader.replies()
    assert len(replies) == 1 and len(replies[0]) == count  # type: ignore[arg-type]
    assert reader.steps <= count + 1 + reads


def test_a_long_line_arriving_in_pieces_is_searched_once() -> None:
    reader = RespReader()
    reader.feed(b"+")
    for _ in range(1000):
        reader.feed(b"y" * 1000)
        assert reader.next_reply() is NEED_DATA
        assert reader._scan >= len(reader._buf) - 1  # the next search starts past what was searched
    reader.feed(b"\r\n")
    assert reader.next_reply() == "y" * 1_000_000


resp_values = st.recursive(
    st.one_of(
        st.binary(max_size=40).map(lambda b: ("bulk", b)),
        st.integers(-(2**70), 2**70).map(lambda i: ("int", i)),
        st.text(alphabet="abcXYZ 019", max_size=12).map(lambda t: ("simple", t)),
        st.just(("null", None)),
        st.booleans().map(lambda b: ("bool", b)),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=5).map(lambda items: ("array", items)),
        st.lists(children, max_size=5).map(lambda items: ("push", items)),
        st.dictionaries(st.binary(max_size=8), children, max_size=4).map(lambda m: ("map", m)),
    ),
    max_leaves=30,
)


def _encode(node: Any) -> bytes:
    kind, value = node
    if kind == "bulk":
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if kind == "int":
        return b":%d\r\n" % value
    if kind == "simple":
        return b"+" + value.encode() + b"\r\n"
    if kind == "null":
        return b"_\r\n"
    if kind == "bool":
        return b"#t\r\n" if value else b"#f\r\n"
    if kind in ("array", "push"):
        return (b"*" if kind == "array" else b">") + b"%d\r\n" % len(value) + b"".join(map(_encode, value))
    return b"%%%d\r\n" % len(value) + b"".join(_encode(("bulk", k)) + _encode(v) for k, v in value.items())


def _expected(node: Any) -> Any:
    kind, value = node
    if kind in ("array", "push"):
        return [_expected(item) for item in value]
    if kind == "map":
        return {k.decode(errors="replace"): _expected(v) for k, v in value.items()}
    return value


@settings(max_examples=300)
@given(st.lists(resp_values, min_size=1, max_size=6), st.data())
def test_any_stream_of_replies_reads_the_same_however_it_is_cut(nodes: List[Any], data: Any) -> None:
    stream = b"".join(map(_encode, nodes))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(len(stream) - 1, 1)), max_size=20)))
    reader = RespReader()
    got: List[object] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        reader.feed(stream[start:end])
        got += reader.replies()
    expected = [_expected(node) for node in nodes]
    # maps with keys that decode alike collapse the same way in both
    assert got == expected


@settings(max_examples=500)
@given(st.binary(max_size=300), st.integers(1, 50))
def test_garbage_in_any_pieces_gives_replies_or_the_protocol_error(data: bytes, piece: int) -> None:
    reader = RespReader()
    try:
        for start in range(0, len(data), piece):
            reader.feed(data[start : start + piece])
            for reply in reader.replies():
                assert reply is not NEED_DATA
    except RespProtocolError:
        pass


def test_error_replies_are_values_not_exceptions() -> None:
    reader = RespReader()
    reader.feed(b"*2\r\n-ERR x\r\n!3\r\nbad\r\n")
    assert reader.next_reply() == [RespError("ERR x"), RespError("bad")]
