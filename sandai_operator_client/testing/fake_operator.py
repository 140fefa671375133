"""FakeOperator: the operator's side of the protocol, scripted per task, on anyio (asyncio or trio).

It BRPOPs the four priority queues ``<priority>.<name>.<version>`` (and kombu's priority sub-lists) in
the SDK's order, decodes the Celery v2 message, takes the client task id from ``correlation_id``, honours
``deadline`` and ``cancel_key`` before "computing" as the SDK does, answers ``desc`` queries, and writes the
result record as Celery's Redis backend does: ``SETEX celery-task-meta-<id>`` + ``PUBLISH`` in one MULTI.
"""

from __future__ import annotations

import datetime
import math
import threading
import time
from contextlib import contextmanager
from functools import partial
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, Union
from urllib.parse import urlsplit

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.from_thread import start_blocking_portal

from .._core.command_channel import CommandChannel
from .._io.backoff import retry_while_disconnected
from .._io.redis import ConnectionLost, RedisConnection, parse_redis_url
from ..config import VALID_PRIORITIES
from ..protocol.celery import decode_task_body
from ..protocol.kombu_redis import decode_redis_envelope
from ..protocol.results import encode_result_record, result_key
from ..protocol.serialization import DecodeError
from ._kombu_consumer import consume_kombu
from ._queue_taker import QueueTaker
from .behaviours import (
    Behaviour,
    Crash,
    Delay,
    Echo,
    Fail,
    RawRecord,
    Reply,
    Succeed,
    echo_behaviour,
    error_envelope,
    reply_envelope,
)

__all__ = (
    "Behaviour",
    "Crash",
    "Delay",
    "Echo",
    "Fail",
    "FakeOperator",
    "RawRecord",
    "Reply",
    "Succeed",
    "echo_behaviour",
)


class FakeOperator:
    """A protocol-level operator for tests. Run it with ``async with op.running():`` or ``with op.in_thread():``.

    ``received`` lists every payload taken from the queues (with ``_priority`` and ``_task_id`` added),
    ``skipped`` the ids of tasks it did not run because their deadline had passed or their cancel key was
    set; :meth:`assert_received` checks them as respx's ``route.called`` does.
    ``honour_deadline``, ``honour_cancel_key`` and ``serve_desc`` switched off play an operator that
    breaks the protocol (what the conformance run must catch). ``reliable=True`` takes messages and
    notes them in ``unacked`` in one atomic step (a Lua script, polled every 5 ms when idle) and answers
    what it had taken before a broker restart: an operator that loses nothing, for fault tests; the
    default takes them as kombu does (pop, then note), which can lose a message popped just before a
    crash, and blocks instead of polling. ``track_unacked=False`` skips the ``unacked`` bookkeeping (two
    round trips per task) for pure speed, as the benchmarks' operator does. ``concurrency``: run at most
    this many tasks at a time and take no more messages meanwhile (with ``prefetch=1``, one by one, as an
    SDK operator with ``max_concurrency=1``); default unbounded.
    """

    def __init__(
        self,
        name: str,
        version: str = "v1",
        *,
        broker_url: str = "redis://127.0.0.1:6379/0",
        result_backend: Optional[str] = None,
        behaviour: Behaviour = echo_behaviour,
        result_serializer: str = "json",
        result_expires: int = 7200,
        desc: Optional[Dict[str, Any]] = None,
        clock: Callable[[], float] = time.time,
        prefetch: int = 256,
        honour_deadline: bool = True,
        honour_cancel_key: bool = True,
        serve_desc: bool = True,
        result_retry_seconds: float = 60.0,
        reliable: bool = False,
        track_unacked: bool = True,
        concurrency: Optional[int] = None,
    ) -> None:
        self.name = name
        self.version = version
        self.broker_url = broker_url
        self.result_backend = result_backend or broker_url
        self.behaviour = behaviour
        self.result_serializer = result_serializer
        self.result_expires = result_expires
        self.desc = (
            desc
            if desc is not None
            else {
                "doc": f"Fake operator {name} {version}",
                "options_schema": {"type": "object"},
                "results_schema": {"type": "object"},
            }
        )
        self._clock = clock
        self.prefetch = prefetch
        # switches to play an operator that breaks the protocol (for conformance tests)
        self.honour_deadline = honour_deadline
        self.honour_cancel_key = honour_cancel_key
        self.serve_desc = serve_desc
        self.result_retry_seconds = result_retry_seconds
        self.reliable = reliable
        self.track_unacked = track_unacked or reliable
        self.concurrency = concurrency
        self.received: List[Dict[str, Any]] = []
        self.skipped: List[str] = []
        self.queues = [f"{p}.{name}.{version}" for p in VALID_PRIORITIES]
        self.ready = threading.Event()

    def assert_received(self, count: Optional[int] = None, **options: Any) -> List[Dict[str, Any]]:
        """The payloads received whose options include ``options`` (all of them without); asserts there
        are ``count`` of them when given, else at least one. Returns them."""
        matching = [
            payload
            for payload in self.received
            if all((payload.get("options") or {}).get(key) == value for key, value in options.items())
        ]
        if count is None:
            assert matching, f"{self.name} received no task with options {options!r} (it got {len(self.received)})"
        else:
            assert len(matching) == count, (
                f"{self.name} received {len(matching)} task(s) with options {options!r}, expected {count}"
            )
        return matching

    # ------------------------------------------------------------------ running
    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Consume and answer tasks until cancelled; survives broker restarts (reconnects with backoff)."""
        if urlsplit(self.broker_url).scheme not in ("redis", "rediss", "unix", "redis+socket"):
            await self._run_kombu(task_status)
            return
        address = parse_redis_url(self.broker_url)
        broker = await RedisConnection.open(address, 5.0)  # the first connection must work
        results = CommandChannel(parse_redis_url(self.result_backend))
        bookkeeping = CommandChannel(address)
        queues = QueueTaker(self.queues, self.prefetch, reliable=self.reliable, track_unacked=self.track_unacked)
        in_flight: Set[str] = set()
        try:
            async with anyio.create_task_group() as tg:
                self.ready.set()
                task_status.started()
                recover = self.reliable
                while True:
                    try:
                        if recover:  # messages taken before a restart are still in `unacked`: answer them
                            recover = False
                            taken = await queues.recover(bookkeeping, in_flight)
                        else:
                            while self.concurrency is not None and len(in_flight) >= self.concurrency:
                                await anyio.sleep(0.005)  # a slot frees when a task is answered
                            taken = await queues.take(broker, bookkeeping)
                    except ConnectionLost:
                        await broker.aclose()
                        broker = await self._reconnect(address)
                        recover = self.reliable
                        continue
                    for list_name, tag, raw in taken:  # (_recover already skipped what is in flight)
                        in_flight.add(tag)
                        tg.start_soon(self._handle, list_name, raw, results, bookkeeping, tag, in_flight)
        finally:
            self.ready.clear()
            with anyio.CancelScope(shield=True):
                await broker.aclose()
                await results.aclose()
                await bookkeeping.aclose()

    async def _run_kombu(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Consume from an AMQP (any kombu) broker: a kombu consumer in a worker thread feeds this loop."""
        send, receive = anyio.create_memory_object_stream[Tuple[str, Optional[str], bytes, str]](math.inf)
        stop = threading.Event()
        started = threading.Event()
        failure: List[BaseException] = []

        def consume() -> None:
            consume_kombu(self.broker_url, self.queues, self.prefetch, send, stop, started, failure)

        results = CommandChannel(parse_redis_url(self.result_backend))
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(partial(anyio.to_thread.run_sync, consume, abandon_on_cancel=True))
                await anyio.to_thread.run_sync(started.wait)
                if failure:
                    raise ConnectionLost(f"fake operator cannot consume: {failure[0]!r}")
                self.ready.set()
                task_status.started()
                async for queue, task_id, body, content_type in receive:
                    tg.start_soon(self._handle_message, queue, task_id, body, content_type, results)
        finally:
            stop.set()
            self.ready.clear()
            with anyio.CancelScope(shield=True):
                await results.aclose()

    @staticmethod
    async def _reconnect(address: Any) -> RedisConnection:
        return await retry_while_disconnected(lambda: RedisConnection.open(address, 5.0))

    @contextmanager
    def in_thread(self) -> Iterator[FakeOperator]:
        """Run in a background thread with its own event loop for the duration of the block."""
        with start_blocking_portal() as portal:
            future = portal.start_task_soon(self.run)
            while not self.ready.wait(0.05):
                if future.done():
                    future.result()  # raises why it could not start (e.g. ConnectionLost)

            try:
                yield self
            finally:
                future.cancel()

    def running(self) -> Any:
        """``async with op.running():`` runs the operator in a task group for the block."""
        return _Running(self)

    # ------------------------------------------------------------------ one task
    async def _handle(
        self,
        list_name: str,
        raw: bytes,
        results: CommandChannel,
        bookkeeping: CommandChannel,
        tag: str,
        in_flight: Set[str],
    ) -> None:
        try:
            await self._handle_one(list_name, raw, results)
        finally:
            if self.track_unacked:
                await self._untrack(bookkeeping, tag)
            in_flight.discard(tag)

    async def _untrack(self, bookkeeping: CommandChannel, tag: str) -> None:
        # answered (or given up): no longer in flight. Keep trying, or a broker restart would hand
        # the task to `_recover` and run it twice.
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.result_retry_seconds):
            await retry_while_disconnected(lambda: bookkeeping.execute("HDEL", "unacked", tag))

    async def _handle_one(self, list_name: str, raw: bytes, results: CommandChannel) -> None:
        try:
            envelope, body = decode_redis_envelope(raw)
        except DecodeError:
            return  # the SDK rejects what it cannot decode; nothing to answer
        await self._handle_message(
            list_name, envelope["properties"].get("correlation_id"), body, envelope.get("content-type", ""), results
        )

    async def _handle_message(
        self, list_name: str, task_id: Optional[str], body: bytes, content_type: str, results: CommandChannel
    ) -> None:
        try:
            _, kwargs, _ = decode_task_body(body, content_type)
        except DecodeError:
            return
        if not task_id:
            return
        priority = list_name.split(".", 1)[0]
        self.received.append({**kwargs, "_priority": priority, "_task_id": task_id})
        sdk_task_id = f"{list_name}:{task_id}:{id(kwargs)}"
        envelope_out = await self._answer(kwargs, sdk_task_id, results)
        if envelope_out is None:
            return
        if isinstance(envelope_out, dict) and (envelope_out.get("error") or {}).get("error_details", {}).get(
            "skipped_before_processing"
        ):
            self.skipped.append(task_id)
        if isinstance(envelope_out, bytes):
            record = envelope_out
        else:
            record = encode_result_record(
                task_id=task_id,
                status="SUCCESS",
                result=envelope_out,
                date_done=datetime.datetime.fromtimestamp(self._clock(), datetime.timezone.utc).isoformat(),
                serializer=self.result_serializer,
            )
        key = result_key(task_id)
        # Unlike the SDK, keep trying while the backend is away (fault tests restart Redis under us).
        with anyio.move_on_after(self.result_retry_seconds):
            await retry_while_disconnected(
                lambda: results.execute_many(
                    [("MULTI",), ("SETEX", key, self.result_expires, record), ("PUBLISH", key, record), ("EXEC",)]
                )
            )

    async def _answer(
        self, payload: Dict[str, Any], sdk_task_id: str, results: CommandChannel
    ) -> Union[bytes, Dict[str, Any], None]:
        if payload.get("task_type") == "desc":
            return {**self.desc, "task_id": sdk_task_id, "status": "success"} if self.serve_desc else None
        deadline = payload.get("deadline")
        now = self._clock()
        if deadline and now > deadline and self.honour_deadline:
            return error_envelope(
                sdk_task_id,
                "TaskDeadlineExceededError",
                f"Task deadline exceeded before processing: {deadline} < {now}",
                {
                    "deadline": deadline,
                    "current_time": now,
                    "exceeded_by": now - deadline,
                    "skipped_before_processing": True,
                },
            )
        cancel_key = payload.get("cancel_key")
        if cancel_key and self.honour_cancel_key and await results.execute("EXISTS", cancel_key) == 1:
            return error_envelope(
                sdk_task_id,
                "TaskCancelledError",
                f"Task was cancelled via cancel_key: {cancel_key}",
                {"cancel_key": cancel_key, "skipped_before_processing": True},
            )
        reply = self.behaviour(payload)
        while isinstance(reply, Delay):
            await anyio.sleep(reply.seconds)
            reply = reply.then
        return reply_envelope(reply, payload, sdk_task_id)


class _Running:
    def __init__(self, operator: FakeOperator) -> None:
        self._operator = operator
        self._tg: Optional[anyio.abc.TaskGroup] = None

    async def __aenter__(self) -> FakeOperator:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        await self._tg.start(self._operator.run)
        return self._operator

    async def __aexit__(self, *exc_info: Any) -> Optional[bool]:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        return await self._tg.__aexit__(*exc_info)


if __name__ == "__main__":
    from ._fake_process import main

    main()
