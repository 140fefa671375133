"""The write path: a socket stream that never copies what it could not send yet, pipelines written in
pieces as they are encoded, and LPUSHes whose envelopes are encoded when written and again, the same
bytes, when a lost pipeline is settled (real sockets, real Redis)."""

from __future__ import annotations

import json
import socket
from typing import Iterator, List

import anyio
import pytest
import redis

from sandai_operator_client import create_async_client
from sandai_operator_client._core import broker
from sandai_operator_client._core.broker import PreparedTask, RedisPublisher
from sandai_operator_client._core.hub.commands import ResultKeysCommand
from sandai_operator_client._io.redis import ConnectionLost
from sandai_operator_client._io.sockets import SocketByteStream
from sandai_operator_client.protocol.celery import TaskMessage, encode_task_message
from sandai_operator_client.protocol.kombu_redis import priority_list_name
from sandai_operator_client.protocol.resp import encode_command, encode_pipeline
from sandai_operator_client.protocol.results import result_key

pytestmark = pytest.mark.anyio

BIG = 8 * 1024 * 1024  # far more than the kernel's socket buffers: the sender must wait for the reader


def stream_pair() -> tuple[SocketByteStream, SocketByteStream]:
    left, right = socket.socketpair()
    return SocketByteStream(left), SocketByteStream(right)


async def read_exactly(stream: SocketByteStream, size: int) -> bytes:
    received = bytearray()
    while len(received) < size:
        received += await stream.receive()
    return bytes(received)


async def test_a_long_send_and_senders_queued_behind_it_arrive_whole_and_in_order() -> None:
    sender, reader = stream_pair()
    first = bytes(range(256)) * (BIG // 256)
    expected = first + b"second" + b"third"
    async with anyio.create_task_group() as tg:
        tg.start_soon(sender.send, first)
        await anyio.sleep(0.05)  # the first send is stuck on a full socket buffer
        tg.start_soon(sender.send, b"second")
        await anyio.sleep(0.01)
        tg.start_soon(sender.send, b"third")
        await anyio.sleep(0.01)
        assert await read_exactly(reader, len(expected)) == expected
    await sender.aclose()
    await reader.aclose()


async def test_pieces_are_taken_as_they_go_out_and_nobody_cuts_in_between() -> None:
    sender, reader = stream_pair()
    taken: List[int] = []
    piece = b"p" * (1024 * 1024)

    def pieces() -> Iterator[bytes]:
        for i in range(8):
            taken.append(i)
            yield piece

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender.send_pieces, pieces())
        await anyio.sleep(0.05)
        assert len(taken) < 8  # a full socket buffer: the rest is not encoded ahead of the socket
        tg.start_soon(sender.send, b"other")  # another sender waits for all eight pieces
        await anyio.sleep(0.01)
        data = await read_exactly(reader, 8 * len(piece) + 5)
    assert taken == list(range(8))
    assert data == piece * 8 + b"other"
    await sender.aclose()
    await reader.aclose()


def test_a_del_of_result_keys_makes_its_keys_as_it_is_encoded() -> None:
    ids = [f"id-{i}" for i in range(3000)]
    command = ResultKeysCommand("DEL", ids)
    head = list(command)[:2]
    assert len(command) == 3001 and head == ["DEL", result_key("id-0")]
    pieces = list(encode_pipeline([command], piece_size=4096))
    assert len(pieces) > 1  # encoded piece by piece, the keys never all held as strings
    assert b"".join(pieces) == encode_command("DEL", *[result_key(i) for i in ids])


def test_a_prepared_task_is_its_message_flattened() -> None:
    message = encode_task_message(
        task_id="t-1", task_name="n", kwargs={"a": 1}, origin="o", serializer="json", extra_headers={"x": 1}
    )
    task = PreparedTask.of(message, "q", "tag")
    assert PreparedTask._fields[: len(TaskMessage._fields)] == TaskMessage._fields
    assert task.message == message and task.task_id == "t-1" and task.queue == "q" and task.delivery_tag == "tag"
    assert task.span is None


async def test_a_lost_pipeline_is_settled_by_re_encoding_the_envelopes_it_sent(
    redis_url: str, unique_name: str, redis_admin: redis.Redis
) -> None:
    # LPUSHes keep no envelope (10 MB for 10,000 tasks): settling one whose connection broke finds it in
    # its list by encoding it again, so the same bytes must come out
    async with create_async_client(unique_name, "v1", broker_url=redis_url, result_backend=redis_url) as client:
        core = client._core
        publisher = core.publisher
        assert isinstance(publisher, RedisPublisher)
        tasks = [core.prepare([], {"text": str(i)}) for i in range(3)]
        commands = publisher.lpush_commands(tasks)
        assert len(commands) == 1  # one LPUSH for the three
        _, queue_list, *envelopes = commands[0]
        redis_admin.lpush(queue_list, envelopes[0], envelopes[1])  # the third never reached the queue
        redis_admin.lrem(queue_list, 1, envelopes[1])  # the second was taken by an operator
        redis_admin.hset("unacked", tasks[1].delivery_tag, b"taken")
        try:
            lost = ConnectionLost("killed")
            lost.maybe_sent = True
            reasons = await publisher.outcome(tasks, commands, [lost])
        finally:
            redis_admin.hdel("unacked", tasks[1].delivery_tag)
            redis_admin.delete(queue_list)
    assert reasons[0] is not None and "withdrawn" in reasons[0]
    assert reasons[1] is None  # it went out
    assert reasons[2] is not None and "never reached the queue" in reasons[2]
    assert list(commands[0]) == list(publisher.lpush_commands(tasks)[0])


async def test_a_batch_is_one_lpush_per_list_and_is_taken_in_order(
    redis_url: str, unique_name: str, redis_admin: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one LPUSH carries a run of tasks for the same list (at most MAX_LPUSH_VALUES); a consumer popping
    # from the right, as kombu does, takes them in the order they were submitted
    monkeypatch.setattr(broker, "MAX_LPUSH_VALUES", 4)
    async with create_async_client(unique_name, "v1", broker_url=redis_url, result_backend=redis_url) as client:
        core = client._core
        publisher = core.publisher
        assert isinstance(publisher, RedisPublisher)
        tasks = [core.prepare([], {"text": str(i)}, priority="high" if i in (5, 6) else None) for i in range(10)]
        commands = publisher.lpush_commands(tasks)
        assert [(c.start, c.stop) for c in commands] == [(0, 4), (4, 5), (5, 7), (7, 10)]
        assert [len(c) for c in commands] == [6, 3, 4, 5]
        lists = {c.list_name for c in commands}
        try:
            assert await core.publish(tasks) == [None] * 10
            taken = {name: [] for name in lists}
            for name in lists:
                while (raw := redis_admin.rpop(name)) is not None:
                    taken[name].append(json.loads(raw)["properties"]["correlation_id"])
        finally:
            redis_admin.delete(*lists)
    by_list = {name: [t.task_id for t in tasks if priority_list_name(t.queue, 0) == name] for name in lists}
    assert taken == by_list


async def close_while_a_carried_write_waits(redis_url: str, name: str, redis_admin: redis.Redis) -> bool:
    """Close the hub while a carried LPUSH waits to be written; False when that moment was missed."""
    client = create_async_client(name, "v1", broker_url=redis_url, result_backend=redis_url)
    core = client._core
    hub = core.hub
    publisher = core.publisher
    assert isinstance(publisher, RedisPublisher) and await hub.carries_commands()
    task = core.prepare([], {"text": "late"})
    lpushes = publisher.lpush_commands([task])
    replies: List[object] = []
    caught = False

    async def carry() -> None:
        async with hub.watch([task.task_id], commands=lpushes, await_replies=False) as watch:
            await anyio.sleep(0.05)
            replies.extend(watch.replies)

    try:
        async with hub.watch([f"{name}-other"], fetch_existing=False):
            async with anyio.create_task_group() as tg:
                tg.start_soon(carry)
                for _ in range(3):
                    await anyio.sleep(0)
                    if hub.statistics().unsent_writes:  # carry()'s write is queued, not sent: close now
                        caught = True
                        await hub.aclose()
                        break
        if caught:
            assert len(replies) == 1 and isinstance(replies[0], ConnectionLost) and not replies[0].maybe_sent
            await anyio.sleep(0.1)
            assert redis_admin.llen(lpushes[0].list_name) == 0  # reported not sent, and indeed not sent
        return caught
    finally:
        await client.aclose()
        redis_admin.delete(lpushes[0].list_name)


async def test_closing_does_not_send_carried_commands_it_reported_unsent(
    redis_url: str, unique_name: str, redis_admin: redis.Redis
) -> None:
    # With another watch active, a carried write waits one scheduling turn to coalesce with others. Close
    # the hub in that turn: the write's caller is told "not sent", so it must indeed not be sent. trio
    # runs ready tasks in either order, so the turn may be missed: then try again with a new task.
    for _ in range(40):
        if await close_while_a_carried_write_waits(redis_url, unique_name, redis_admin):
            return
    pytest.fail("the carried write was never caught queued")
