"""OperatorCore: every client behaviour, once, in async code that runs under asyncio and trio.

The facades (``AsyncOperatorClient``, ``OperatorClient``) only translate arguments and return shapes.
Task ids are ours (uuid4); the payload's ``task_id`` written by the operator is never trusted.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence
from urllib.parse import urlsplit

import anyio.lowlevel

from .._io.loop import Mutex, current_time
from .._io.redis import REDIS_SCHEMES, ConnectionLost, parse_redis_url
from .._log import logger
from ..config import ClientConfig, check_priority, check_timeout, redact_url
from ..errors import (
    InvalidTaskInputError,
    OperatorError,
)
from ..protocol.celery import TaskShape, encode_task
from ..protocol.operator import (
    DESC_QUERY,
    PROBE_OPTIONS,
    build_task_payload,
    envelope_from_record,
    inspect_probe_result,
    parse_desc_result,
)
from ..protocol.results import result_key
from ..protocol.serialization import EncodeError
from ..types import ClientStatistics, HealthCheckResult
from . import batches, calls, requests
from .broker import PreparedTask, Publisher, RedisPublisher
from .command_channel import CommandChannel
from .failures import Failures
from .hub import Outcome, ResultHub
from .ids import new_uuid4
from .publishing import Publishing
from .tracing import end_task_span, start_task_span

__all__ = ("OperatorCore",)


class OperatorCore:
    """The client's state and logic: connections, the result hub, the publisher, the desc cache.

    Its parts are plain attributes, read by the modules that hold the core's other methods (calls,
    batches, requests) and by tests: ``hub`` (the ``ResultHub``), ``results_channel`` (the result
    backend's command channel), ``publisher``, ``publishing``, ``failures``.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = new_uuid4,
        reconnect_timeout: float = 30.0,
    ) -> None:
        self.config = config
        self._clock = clock
        self._new_id = new_id
        self._policy = config.connection
        backend_scheme = urlsplit(config.result_backend).scheme
        if backend_scheme not in REDIS_SCHEMES:
            raise ValueError(
                f"unsupported result backend {redact_url(config.result_backend)!r}: "
                "operators write results with Celery's Redis backend (redis://, rediss://, unix://)"
            )
        for serializer in (config.celery.task_serializer, config.celery.result_serializer):
            if serializer not in ("json", "msgpack"):
                raise ValueError(f"unsupported serializer {serializer!r}: use 'json' or 'msgpack' (never pickle)")
        self._channels: Dict[str, CommandChannel] = {}
        self.results_channel = self.command_channel(config.result_backend)
        self.hub = ResultHub(
            self.results_channel.address,
            self.results_channel,
            accept=config.celery.accept_content or ("json", "msgpack"),
            policy=self._policy,
            reconnect_timeout=reconnect_timeout,
        )
        self.publisher = self._make_publisher(config.broker_url)
        self.failures = Failures(config.operator_name, config.operator_version)
        # Broker and backend on the same Redis database: a call's LPUSH can ride with its SUBSCRIBE on the
        # hub's connection (when that speaks RESP3), one write instead of two round trips.
        lpush_on_hub: Optional[RedisPublisher] = None
        if isinstance(self.publisher, RedisPublisher):
            if parse_redis_url(config.broker_url) == self.results_channel.address:
                lpush_on_hub = self.publisher
        self.publishing = Publishing(self.publisher, self.hub, self.failures, lpush_on_hub)
        self._origin = f"gen{os.getpid()}@{socket.gethostname()}"
        self._reply_to = new_uuid4()
        self._shape = TaskShape(config.task_name, self._origin, self._reply_to)  # what all our tasks share
        self._desc: Optional[Dict[str, Any]] = None
        self._desc_lock = Mutex()
        self._closed = False

    def command_channel(self, url: str) -> CommandChannel:
        channel = self._channels.get(url)
        if channel is None:
            channel = CommandChannel(parse_redis_url(url), self._policy)
            self._channels[url] = channel
        return channel

    def _make_publisher(self, url: str) -> Publisher:
        if urlsplit(url).scheme in REDIS_SCHEMES:
            return RedisPublisher(self.command_channel(url), settle_timeout=self._policy.io_timeout)
        from .._io.amqp import KombuPublisher  # kombu is imported only for non-Redis brokers

        return KombuPublisher(url, connect_timeout=self._policy.connect_timeout)

    def check_open(self) -> None:
        if self._closed:
            raise self.failures.connection("the client is closed")

    # ------------------------------------------------------------------ preparing
    def check_priority(self, priority: Optional[str]) -> str:
        """The effective priority; ``InvalidPriorityError`` for anything outside ``VALID_PRIORITIES``."""
        return check_priority(priority or self.config.priority)

    def prepare(
        self,
        input_artifacts: Any,
        options: Any,
        *,
        priority: Optional[str] = None,
        timeout: Optional[float] = None,
        cancel_key: Optional[str] = None,
        persistent_output: bool = False,
    ) -> PreparedTask:
        """Validate and encode one task. Raises before anything is published."""
        resolved_priority = self.check_priority(priority)
        effective = check_timeout(timeout) if timeout is not None else self.config.timeout
        deadline = self._clock() + effective if effective else None
        payload = build_task_payload(
            input_artifacts,
            options,
            deadline=deadline,
            cancel_key=cancel_key or self.config.cancel_key,
            persistent_output=persistent_output,
        )
        return self.prepare_payload(payload, resolved_priority)

    def prepare_payload(self, payload: Dict[str, Any], priority: str) -> PreparedTask:
        """Encode an already built payload for the queue of ``priority``."""
        task_id = self._new_id()
        queue = self.config.queue_names[priority]
        traced = start_task_span(self.config.operator_name, self.config.operator_version, task_id, queue)
        if traced is not None:
            payload = {**payload, "_tracing": traced[1]}
        try:
            message = encode_task(
                self._shape, task_id=task_id, kwargs=payload, serializer=self.config.celery.task_serializer
            )
        except EncodeError as exc:
            if traced is not None:
                end_task_span(traced[0], exc)
            raise InvalidTaskInputError(str(exc)) from exc
        return PreparedTask.of(message, queue, new_uuid4(), None if traced is None else traced[0])

    # ------------------------------------------------------------------ publishing (publishing.py)
    def publish(self, tasks: Sequence[PreparedTask]) -> Awaitable[List[Optional[Exception]]]:
        """Await it: publishes ``tasks``; per task, None or the connection error that kept it from the queue."""
        self.check_open()
        return self.publishing.publish(tasks)

    async def publish_one(self, task: PreparedTask) -> str:
        """Publish one task; its id, or raises the ``OperatorConnectionError`` that kept it from the queue
        (``PublishOutcomeUnknownError`` when it may have reached it)."""
        self.check_open()
        (error,) = await self.publishing.settled((task,))
        if error is not None:
            raise error
        return task.task_id

    def submit(self, input_artifacts: Any, options: Any, **controls: Any) -> Awaitable[str]:
        """Await it: publishes one task; its id. Invalid input raises at the call, before anything is sent."""
        return self.publish_one(self.prepare(input_artifacts, options, **controls))

    # ------------------------------------------------------------------ results
    def envelope(self, task_id: str, outcome: Outcome) -> Any:
        """The operator's envelope in a task's outcome; the typed error the outcome stands for otherwise."""
        if isinstance(outcome, ConnectionLost):  # the subscription was refused or lost for good
            raise self.failures.unavailable(task_id, outcome)
        if isinstance(outcome, Exception):
            raise outcome
        return envelope_from_record(task_id, outcome)

    @staticmethod
    def deadline_after(timeout: float) -> float:
        """The hub's deadline (the event loop's clock) for a wait of at most ``timeout`` seconds."""
        return current_time() + max(timeout, 0)

    async def desc(self) -> Dict[str, Any]:
        """The operator's description, asked once per client (concurrent callers share the request)."""
        if self._desc is None:
            async with self._desc_lock:
                if self._desc is None:
                    task = self.prepare_payload(dict(DESC_QUERY), "high")
                    envelope = await self.call(task, self.config.timeout)
                    self._desc = parse_desc_result(task.task_id, envelope).to_dict()
        else:
            await anyio.lowlevel.checkpoint()  # a public call is a checkpoint, even when it has the answer
        return self._desc

    # ------------------------------------------------------------------ result keys
    async def forget_later(self, task_ids: Sequence[str]) -> None:
        """Delete consumed result keys without a round trip of their own.

        On a RESP3 hub connection the DEL rides with the hub's next write (the watch's UNSUBSCRIBE);
        otherwise with the command channel's next pipeline, or now once ``DEFER_LIMIT`` keys wait and no
        pipeline is going out (if one is, they wait for the next one or for ``aclose``).
        """
        if not self.config.auto_forget_result or not task_ids or self._closed:
            return
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("result key(s) of %d task(s) to delete: %s", len(task_ids), ", ".join(task_ids[:10]))
        if self.hub.forget(task_ids):
            return
        self.results_channel.defer("DEL", *[result_key(t) for t in task_ids])
        if self.results_channel.deferred_backlog >= self.results_channel.DEFER_LIMIT and not self.results_channel.busy:
            await self.results_channel.flush_deferred()

    # ------------------------------------------------------------------ calls (calls.py)
    call = calls.call
    sync = calls.sync
    get_result = calls.get_result

    # ------------------------------------------------------------------ batches (batches.py)
    batch_submit = batches.batch_submit
    batch_collect = batches.batch_collect
    batch_sync_detailed = batches.batch_sync_detailed
    iter_completed = batches.iter_completed

    # ------------------------------------------------------------------ one-shot requests (requests.py)
    forget = requests.forget
    state = requests.state
    raw_record = requests.raw_record
    ready = requests.ready
    cancel = requests.cancel
    withdraw = requests.withdraw
    queue_depth = requests.queue_depth

    # ------------------------------------------------------------------ health
    async def probe(self, timeout: float = 10) -> HealthCheckResult:
        """Submit a test task at low priority and check that an operator envelope comes back."""
        try:
            task = self.prepare([], dict(PROBE_OPTIONS), priority="low")
        except OperatorError as exc:
            return HealthCheckResult(submit_ok=False, retrieval_ok=False, response_ok=False, error=str(exc))
        published: List[str] = []
        try:
            envelope = await self.call(task, timeout, published)
        except OperatorError as exc:
            return HealthCheckResult(
                submit_ok=bool(published),
                retrieval_ok=False,
                response_ok=False,
                task_id=task.task_id if published else None,
                error=str(exc),
            )
        response_ok, error = inspect_probe_result(envelope)
        return HealthCheckResult(
            submit_ok=True, retrieval_ok=True, response_ok=response_ok, task_id=task.task_id, error=error
        )

    def statistics(self) -> ClientStatistics:
        """What this core holds now (no I/O): see :class:`~sandai_operator_client.ClientStatistics`."""
        hub = self.hub.statistics()
        channels = sum(1 for channel in self._channels.values() if channel.connected)
        return ClientStatistics(
            connections=channels + hub.connected,
            watched_channels=hub.watched_channels,
            waiting_calls=hub.waiting_calls,
            queued_commands=hub.queued_commands,
            reconnects=hub.reconnects,
            settled_writes=self.publisher.settlements,
        )

    def abandon(self) -> None:
        """Close every connection at once, outside any event loop: for a client whose loop has ended
        (a test's, say) without ``aclose()``; nothing is sent. Idempotent; ``aclose()`` after it is a no-op."""
        if self._closed:
            return
        self._closed = True
        self.hub.abandon()
        self.publisher.abandon()
        for channel in self._channels.values():
            channel.abandon()

    async def aclose(self) -> None:
        """Close every connection; waiters still blocked get ``OperatorConnectionError``."""
        if self._closed:  # at once, never suspending: the blocking client closes its core from two places,
            return  # one a task its inline loop may stop driving once the other has closed the core
        await self.hub.aclose()
        await self.publisher.aclose()
        for channel in self._channels.values():
            await channel.aclose()
        self._closed = True
