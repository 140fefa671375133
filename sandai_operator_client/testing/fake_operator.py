"""FakeOperator: the operator's side of the protocol, scripted per task, on anyio (asyncio or trio).

It BRPOPs the four priority queues ``<priority>.<name>.<version>`` (and kombu's priority sub-lists) in
the SDK's order, decodes the Celery v2 message, takes the client task id from ``correlation_id``, honours
``deadline`` and ``cancel_key`` before "computing" as the SDK does, answers ``desc`` queries, and writes the
result record as Celery's Redis backend does: ``SETEX celery-task-meta-<id>`` + ``PUBLISH`` in one MULTI.
"""

from __future__ import annotations

import datetime
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

import anyio
from anyio.from_thread import start_blocking_portal

from .._core.redis import CommandChannel, ConnectionLost, RedisConnection, parse_redis_url
from ..config import VALID_PRIORITIES
from ..protocol.celery import decode_task_body
from ..protocol.kombu_redis import decode_redis_envelope, priority_list_names
from ..protocol.resp import RespError
from ..protocol.results import encode_result_record, result_key
from ..protocol.serialization import DecodeError

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


@dataclass(frozen=True)
class Echo:
    """Succeed with ``{"echo": options["text"], "n_artifacts": n}`` and the input artifacts.

    The same answer as the real ``protocol_fixtures/echo_operator.py``.
    """


@dataclass(frozen=True)
class Succeed:
    """Succeed with these results and artifacts."""

    results: Dict[str, Any] = field(default_factory=dict)
    artifacts: List[Dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Fail:
    """Answer with an operator error envelope."""

    error_type: str = "OperatorFailure"
    error_message: str = "failed"
    error_details: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delay:
    """Wait, then answer with ``then``."""

    seconds: float
    then: Reply = field(default_factory=Echo)


@dataclass(frozen=True)
class Crash:
    """Consume the task and never answer (a worker that died)."""


@dataclass(frozen=True)
class RawRecord:
    """Write these bytes as the result record (garbage, pickle, truncated json, ...) and publish them."""

    data: bytes


Reply = Union[Echo, Succeed, Fail, Delay, Crash, RawRecord]
Behaviour = Callable[[Dict[str, Any]], Reply]
"""Chooses the reply for a task from its payload (the operator kwargs)."""


def echo_behaviour(payload: Dict[str, Any]) -> Reply:
    """The default: options ``fail`` -> error envelope, ``sleep`` -> delay, else echo."""
    options = payload.get("options") or {}
    reply: Reply = Echo()
    if options.get("fail"):
        reply = Fail("EchoFailure", "asked to fail", {"text": options.get("text")})
    if options.get("sleep"):
        reply = Delay(float(options["sleep"]), reply)
    return reply


class FakeOperator:
    """A protocol-level operator for tests. Run it with ``async with op.running():`` or ``with op.in_thread():``.

    ``received`` lists every payload taken from the queues (with ``_priority`` and ``_task_id`` added).
    ``honour_deadline``, ``honour_cancel_key`` and ``serve_desc`` switched off play an operator that
    breaks the protocol (what the conformance run must catch).
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
    ) -> None:
        self.name = name
        self.version = version
        self.broker_url = broker_url
        self.result_backend = result_backend or broker_url
        self.behaviour = behaviour
        self.result_serializer = result_serializer
        self.result_expires = result_expires
        self.desc = desc if desc is not None else {
            "doc": f"Fake operator {name} {version}",
            "options_schema": {"type": "object"},
            "results_schema": {"type": "object"},
        }
        self._clock = clock
        self.prefetch = prefetch
        # switches to play an operator that breaks the protocol (for conformance tests)
        self.honour_deadline = honour_deadline
        self.honour_cancel_key = honour_cancel_key
        self.serve_desc = serve_desc
        self.received: List[Dict[str, Any]] = []
        self.queues = [f"{p}.{name}.{version}" for p in VALID_PRIORITIES]
        self.ready = threading.Event()

    # ------------------------------------------------------------------ running
    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Consume and answer tasks until cancelled."""
        broker = await RedisConnection.open(parse_redis_url(self.broker_url), 5.0)
        results = CommandChannel(parse_redis_url(self.result_backend))
        lists = [name for queue in self.queues for name in priority_list_names(queue)]
        try:
            async with anyio.create_task_group() as tg:
                self.ready.set()
                task_status.started()
                blmpop = True
                while True:
                    if blmpop:  # Redis >= 7: block, then take up to `prefetch` messages in one round trip
                        reply = (await broker.request(
                            [("BLMPOP", 1, len(lists), *lists, "RIGHT", "COUNT", self.prefetch)]))[0]
                        if isinstance(reply, RespError):
                            blmpop = False
                            continue
                        if not isinstance(reply, list):
                            continue
                        list_name, messages = reply[0].decode(), reply[1]
                    else:
                        reply = (await broker.request([("BRPOP", *lists, 1)]))[0]
                        if not isinstance(reply, list):
                            continue
                        list_name, messages = reply[0].decode(), [reply[1]]
                    for raw in messages:
                        tg.start_soon(self._handle, list_name, raw, results)
        finally:
            self.ready.clear()
            with anyio.CancelScope(shield=True):
                await broker.aclose()
                await results.aclose()

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
    async def _handle(self, list_name: str, raw: bytes, results: CommandChannel) -> None:
        try:
            envelope, body = decode_redis_envelope(raw)
            _, kwargs, _ = decode_task_body(body, envelope["content-type"])
        except (DecodeError, KeyError):
            return  # the SDK rejects what it cannot decode; nothing to answer
        task_id = envelope["properties"].get("correlation_id")
        if not task_id:
            return
        priority = list_name.split(".", 1)[0]
        self.received.append({**kwargs, "_priority": priority, "_task_id": task_id})
        sdk_task_id = f"{list_name}:{task_id}:{id(kwargs)}"
        envelope_out = await self._answer(kwargs, sdk_task_id, results)
        if envelope_out is None:
            return
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
        try:
            await results.execute_many(
                [("MULTI",), ("SETEX", key, self.result_expires, record), ("PUBLISH", key, record), ("EXEC",)]
            )
        except ConnectionLost:
            pass  # a broken backend loses the result, as it would for the SDK

    async def _answer(self, payload: Dict[str, Any], sdk_task_id: str, results: CommandChannel
                      ) -> Union[bytes, Dict[str, Any], None]:
        if payload.get("task_type") == "desc":
            return {**self.desc, "task_id": sdk_task_id, "status": "success"} if self.serve_desc else None
        deadline = payload.get("deadline")
        now = self._clock()
        if deadline and now > deadline and self.honour_deadline:
            return _error(sdk_task_id, "TaskDeadlineExceededError",
                          f"Task deadline exceeded before processing: {deadline} < {now}",
                          {"deadline": deadline, "current_time": now, "exceeded_by": now - deadline,
                           "skipped_before_processing": True})
        cancel_key = payload.get("cancel_key")
        if cancel_key and self.honour_cancel_key and await results.execute("EXISTS", cancel_key) == 1:
            return _error(sdk_task_id, "TaskCancelledError", f"Task was cancelled via cancel_key: {cancel_key}",
                          {"cancel_key": cancel_key, "skipped_before_processing": True})
        reply = self.behaviour(payload)
        while isinstance(reply, Delay):
            await anyio.sleep(reply.seconds)
            reply = reply.then
        if isinstance(reply, Crash):
            return None
        if isinstance(reply, RawRecord):
            return reply.data
        if isinstance(reply, Fail):
            return {**_error(sdk_task_id, reply.error_type, reply.error_message, reply.error_details),
                    "results": {}}
        artifacts = payload.get("artifacts") or []
        if isinstance(reply, Succeed):
            results_out, artifacts_out = reply.results, reply.artifacts
        else:
            options = payload.get("options") or {}
            results_out = {"echo": options.get("text", ""), "n_artifacts": len(artifacts)}
            artifacts_out = [{"uri": a.get("uri"), "slot": a.get("slot")} for a in artifacts]
        return {"task_id": sdk_task_id, "status": "success", "results": results_out, "error": None,
                "artifacts": artifacts_out}


def _error(task_id: str, error_type: str, message: str, details: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "task_id": task_id,
        "status": "error",
        "error": {"error_type": error_type, "error_message": message, "error_details": details},
        "artifacts": [],
        "results": None,
    }


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
