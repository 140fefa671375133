"""Unit and property tests of the sans-IO layer: RESP, serializers, payloads, records."""

from __future__ import annotations

import ast
import itertools
import pickle
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandai_operator_client.errors import InvalidResultFormatError, InvalidTaskInputError, InvalidTaskStatusError
from sandai_operator_client.protocol.celery import decode_task_body, encode_task_message
from sandai_operator_client.protocol.kombu_redis import (
    RedisEnvelopeEncoder,
    decode_redis_envelope,
    encode_redis_envelope,
    priority_list_name,
    priority_list_names,
)
from sandai_operator_client.protocol.operator import build_task_payload, inspect_probe_result, parse_task_result
from sandai_operator_client.protocol.resp import (
    NEED_DATA,
    Push,
    RespError,
    RespProtocolError,
    RespReader,
    encode_command,
    encode_commands,
    encode_pipeline,
)
from sandai_operator_client.protocol.results import decode_result_record, encode_result_record
from sandai_operator_client.protocol.serialization import DecodeError, EncodeError, dumps, loads

PROTOCOL_DIR = Path(__file__).resolve().parent.parent / "sandai_operator_client" / "protocol"


def test_protocol_layer_imports_no_io() -> None:
    forbidden = {"anyio", "socket", "celery", "redis", "kombu", "trio", "asyncio", "ssl", "time", "random"}
    for path in PROTOCOL_DIR.glob("*.py"):
        source = path.read_text()
        for clock_or_id in ("uuid1(", "uuid4(", ".now(", ".utcnow(", "time()", "getpid("):
            assert clock_or_id not in source, f"{path.name} makes its own clock or id: {clock_or_id}"
        tree = ast.parse(source)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"


# ---------------------------------------------------------------------------- RESP
RESP_CASES = [
    (b"+OK\r\n", "OK"),
    (b"-ERR wrong\r\n", RespError("ERR wrong")),
    (b":42\r\n", 42),
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$-1\r\n", None),
    (b"*-1\r\n", None),
    (b"*0\r\n", []),
    (b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$4\r\ndata\r\n", [b"message", b"ch", b"data"]),
    (b"*2\r\n*1\r\n:1\r\n$0\r\n\r\n", [[1], b""]),
    # RESP3 (after HELLO 3)
    (b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$4\r\ndata\r\n", [b"message", b"ch", b"data"]),
    (b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n", [b"subscribe", b"ch", 1]),
    (b"%2\r\n$5\r\nproto\r\n:3\r\n+mode\r\n+standalone\r\n", {"proto": 3, "mode": "standalone"}),
    (b"_\r\n", None),
    (b"#t\r\n", True),
    (b"#f\r\n", False),
    (b",1.5\r\n", 1.5),
    (b"(3492890328409238509324850943850943825024385\r\n", 3492890328409238509324850943850943825024385),
    (b"=15\r\ntxt:Some string\r\n", b"Some string"),
    (b"!21\r\nSYNTAX invalid syntax\r\n", RespError("SYNTAX invalid syntax")),
    (b"~2\r\n:1\r\n:2\r\n", [1, 2]),
    (b"|1\r\n+key-popularity\r\n,0.19\r\n:7\r\n", 7),
    (b"*2\r\n_\r\n$1\r\nx\r\n", [None, b"x"]),
]


@pytest.mark.parametrize(("wire", "value"), RESP_CASES)
def test_resp_reader_golden(wire: bytes, value: Any) -> None:
    reader = RespReader()
    # byte by byte: every prefix must say NEED_DATA, never a wrong value
    for i in range(len(wire) - 1):
        reader.feed(wire[i : i + 1])
        assert reader.next_reply() is NEED_DATA
    reader.feed(wire[-1:])
    assert reader.next_reply() == value
    assert reader.next_reply() is NEED_DATA


def test_resp3_pushes_are_told_apart_from_replies() -> None:
    reader = RespReader()
    reader.feed(b">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n:1\r\n*1\r\n:1\r\n")
    push, reply, array = reader.next_reply(), reader.next_reply(), reader.next_reply()
    assert isinstance(push, Push) and push == [b"subscribe", b"c", 1]
    assert reply == 1
    assert array == [1] and not isinstance(array, Push)


def test_resp_reader_hands_over_every_complete_reply_at_once() -> None:
    reader = RespReader()
    reader.feed(b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n:7\r\n>3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0")
    assert reader.replies() == [[b"message", b"c", b"x"], 7]
    assert reader.replies() == []  # the third is not complete yet
    reader.feed(b"\r\n")
    assert reader.replies() == [[b"unsubscribe", b"c", 0]]
    reader.feed(b"*1\r\n!x\r\n")
    with pytest.raises(RespProtocolError):
        reader.replies()


def test_resp_pipeline_and_garbage() -> None:
    reader = RespReader()
    reader.feed(b":1\r\n:2\r\n+OK\r\n")
    assert [reader.next_reply() for _ in range(3)] == [1, 2, "OK"]
    reader.feed(b"!bad\r\n")
    with pytest.raises(RespProtocolError):
        reader.next_reply()
    bad_length = RespReader()
    bad_length.feed(b"$x\r\n")
    with pytest.raises(RespProtocolError):
        bad_length.next_reply()


def test_encode_command() -> None:
    assert encode_command("SETEX", b"k", 10, 1.5) == b"*4\r\n$5\r\nSETEX\r\n$1\r\nk\r\n$2\r\n10\r\n$3\r\n1.5\r\n"
    with pytest.raises(TypeError):
        encode_command("SET", True)


@given(st.lists(st.binary(max_size=64), max_size=8))
def test_resp_bulk_roundtrip(items: list[bytes]) -> None:
    # a command is an array of bulk strings: the reader must read back exactly what was encoded
    reader = RespReader()
    reader.feed(encode_command(*items) if items else b"*0\r\n")
    assert reader.next_reply() == items


@given(st.lists(st.lists(st.binary(max_size=300), min_size=1, max_size=40), max_size=30), st.integers(1, 2000))
def test_encode_pipeline_pieces_end_after_an_argument(commands: list[list[bytes]], piece_size: int) -> None:
    # sent piece by piece, a pipeline must be the same bytes as encoded at once; a piece ends after an
    # argument (a long command, one LPUSH of a batch's envelopes, spans pieces) once it holds piece_size
    # bytes
    pieces = list(encode_pipeline(commands, piece_size))
    assert b"".join(pieces) == encode_commands(commands)
    boundaries = set()
    offset = 0
    for command in commands:
        offset += len(b"*%d\r\n" % len(command))
        for arg in command:
            offset += len(b"$%d\r\n" % len(arg)) + len(arg) + 2
            boundaries.add(offset)
    assert all(end in boundaries for end in itertools.accumulate(map(len, pieces)))
    assert all(len(piece) < piece_size + 320 for piece in pieces[:-1])


def test_encode_pipeline_reads_a_long_commands_arguments_only_as_its_piece_is_made() -> None:
    read: list[int] = []

    class Envelopes(Sequence[bytes]):  # a batch's LPUSH: its arguments are encoded when read
        def __len__(self) -> int:
            return 100

        def __getitem__(self, index: Any) -> Any:
            raise AssertionError("iterated, never indexed")

        def __iter__(self) -> Iterator[bytes]:
            for i in range(100):
                read.append(i)
                yield b"x" * 1000

    pieces = encode_pipeline([Envelopes()], piece_size=10_000)
    first = next(pieces)
    assert len(read) == 10 and first.startswith(b"*100\r\n$1000\r\n")
    assert b"".join([first, *pieces]) == encode_commands([[b"x" * 1000] * 100])


@settings(max_examples=200)
@given(st.lists(st.sampled_from([wire for wire, _ in RESP_CASES]), min_size=1, max_size=12), st.data())
def test_resp_reader_reads_the_same_replies_however_the_bytes_arrive(wires: list[bytes], data: Any) -> None:
    # the reader reads in place while everything is consumed and accumulates while a reply is partial:
    # every way of cutting the stream must give the same replies, in order
    stream = b"".join(wires)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(len(stream) - 1, 1)), max_size=10)))
    reader = RespReader()
    got: list[Any] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        reader.feed(stream[start:end])
        got += reader.replies()
    expected = [dict(RESP_CASES)[wire] for wire in wires]
    assert got == expected


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_resp_reader_never_crashes_on_garbage(data: bytes) -> None:
    reader = RespReader()
    reader.feed(data)
    try:
        for _ in range(50):
            if reader.next_reply() is NEED_DATA:
                break
    except RespProtocolError:
        pass


# ---------------------------------------------------------------------------- serializers and records
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(json_values, st.sampled_from(["json", "msgpack"]))
def test_serializer_roundtrip(value: Any, serializer: str) -> None:
    assert loads(dumps(value, serializer), serializer) == value


@given(json_values, st.sampled_from(["json", "msgpack"]), st.text(min_size=1, max_size=20))
def test_task_message_roundtrip(options: Any, serializer: str, text: str) -> None:
    payload = build_task_payload(
        [{"uri": "s3://b/" + text}], {"v": options}, deadline=1.5, cancel_key=None, persistent_output=True
    )
    message = encode_task_message(task_id="id", task_name="t", kwargs=payload, serializer=serializer, origin="o")
    envelope, body = decode_redis_envelope(encode_redis_envelope(message, queue="q", delivery_tag="d"))
    args, kwargs, _embed = decode_task_body(body, envelope["content-type"])
    assert (args, kwargs) == ([], payload)
    assert envelope["properties"]["correlation_id"] == "id"


@given(json_values, st.sampled_from(["json", "msgpack"]))
def test_result_record_roundtrip(result: Any, serializer: str) -> None:
    raw = encode_result_record(task_id="t", status="SUCCESS", result=result, date_done="d", serializer=serializer)
    record = decode_result_record(raw)
    assert (record.status, record.result, record.task_id) == ("SUCCESS", result, "t")


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_garbage_records_raise_decode_error_only(data: bytes) -> None:
    try:
        decode_result_record(data)
    except DecodeError:
        pass


def test_pickle_is_refused_never_loaded(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> Any:
            return (marker.write_text, ("x",))

    for protocol in range(2, 6):
        with pytest.raises(DecodeError, match="pickle"):
            decode_result_record(pickle.dumps({"status": "SUCCESS", "result": Exploit()}, protocol=protocol))
    with pytest.raises(DecodeError, match="pickle"):
        loads(b"anything", "application/x-python-serialize")
    assert not marker.exists()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b'{"status": 1}',
        b"[1, 2]",
        b'"text"',
        b'{"result": 1}',
        b"\xde\x00",
        b"\x81\xa1a\x01",
        b'{"status": "SUCCESS", "result": {"__type__": "evil", "__value__": 1}}',
        b"\xff\xfe",
    ],
)
def test_bad_records(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_result_record(raw)


def test_unknown_content_type_and_accept_list() -> None:
    with pytest.raises(DecodeError, match="unknown content type"):
        loads(b"x", "application/yaml")
    with pytest.raises(DecodeError, match="not accepted"):
        loads(b"{}", "json", accept=("msgpack",))


def test_unserializable_values() -> None:
    with pytest.raises(EncodeError):
        dumps({"x": object()}, "json")
    with pytest.raises(EncodeError):
        dumps({"x": {1, 2}}, "msgpack")
    with pytest.raises(EncodeError):
        dumps({"x": 1}, "pickle")


# ---------------------------------------------------------------------------- payloads
def test_payload_shape() -> None:
    assert build_task_payload([], {"a": 1}, deadline=None, cancel_key=None, persistent_output=False) == {
        "meta": {"persistent-output": False},
        "artifacts": [],
        "options": {"a": 1},
    }
    assert build_task_payload([{"uri": "u", "slot": "s"}], {}, deadline=5, cancel_key="ck", persistent_output=True) == {
        "meta": {"persistent-output": True},
        "artifacts": [{"uri": "u", "slot": "s"}],
        "options": {},
        "deadline": 5.0,
        "cancel_key": "ck",
    }


@pytest.mark.parametrize(
    ("artifacts", "options", "match"),
    [
        ("file:///x", {}, "list of dicts"),
        ([{"slot": "a"}], {}, "uri"),
        ([{"uri": ""}], {}, "uri"),
        (["x"], {}, r"input_artifacts\[0\]"),
        ([], "opts", "options must be a dict"),
        ([], {1: "a"}, "keys must be strings"),
    ],
)
def test_bad_input_is_refused(artifacts: Any, options: Any, match: str) -> None:
    with pytest.raises(InvalidTaskInputError, match=match):
        build_task_payload(artifacts, options, deadline=None, cancel_key=None, persistent_output=False)


def test_bad_deadline() -> None:
    with pytest.raises(InvalidTaskInputError):
        build_task_payload([], {}, deadline=float("nan"), cancel_key=None, persistent_output=False)


def test_priority_lists() -> None:
    assert priority_list_name("q", 0) == "q"
    assert priority_list_name("q", 5) == "q\x06\x163"
    assert priority_list_names("q") == ("q", "q\x06\x163", "q\x06\x166", "q\x06\x169")


def test_task_result_outputs_are_the_records_own() -> None:
    artifacts: list[Any] = []
    results = {"echo": "x"}
    parsed = parse_task_result("t", {"status": "success", "artifacts": artifacts, "results": results})
    assert parsed.artifacts is artifacts and parsed.results is results  # kept as decoded, not copied
    for missing in ({}, {"artifacts": None, "results": None}, {"artifacts": "", "results": 0}):
        parsed = parse_task_result("t", {"status": "success", **missing})
        assert parsed.to_legacy_tuple() == ([], {})


def test_envelope_parsing_errors() -> None:
    with pytest.raises(InvalidResultFormatError):
        parse_task_result("t", ["not", "a", "dict"])
    with pytest.raises(InvalidTaskStatusError):
        parse_task_result("t", {"status": "partial"})
    assert inspect_probe_result({"status": "error", "error": {"error_message": "boom"}}) == (True, "boom")
    assert inspect_probe_result("x")[0] is False


@settings(max_examples=200, deadline=None)
@given(
    options=st.dictionaries(
        st.text(max_size=8),
        st.text() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.none(),
        max_size=4,
    ),
    task_id=st.text(min_size=1, max_size=40),
    tag=st.text(max_size=40),
    queue=st.sampled_from(["normal.op.v1", "high.op%s.v1", "q\x06\x163"]),
    serializer=st.sampled_from(["json", "msgpack"]),
    priority=st.integers(min_value=0, max_value=9),
)
def test_templated_envelope_is_byte_identical(
    options: Any, task_id: str, tag: str, queue: str, serializer: str, priority: int
) -> None:
    encoder = RedisEnvelopeEncoder()
    for _ in range(2):  # first call builds the template, the second uses it
        message = encode_task_message(
            task_id=task_id,
            task_name="t%s",
            kwargs={"options": options},
            serializer=serializer,
            origin="o%d",
            reply_to="r",
            priority=priority,
        )
        assert encoder.encode(message, queue=queue, delivery_tag=tag) == encode_redis_envelope(
            message, queue=queue, delivery_tag=tag
        )


def test_envelope_with_extra_headers_is_encoded_plainly() -> None:
    message = encode_task_message(task_id="i", task_name="t", kwargs={}, origin="o", extra_headers={"x": 1})
    assert not message.uniform
    assert RedisEnvelopeEncoder().encode(message, queue="q", delivery_tag="d") == encode_redis_envelope(
        message, queue="q", delivery_tag="d"
    )
