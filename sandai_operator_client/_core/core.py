"""OperatorCore: every client behaviour, once, in async code that runs under asyncio and trio.

The facades (``AsyncOperatorClient``, ``OperatorClient``) only translate arguments and return shapes.
Task ids are ours (uuid4); the payload's ``task_id`` written by the operator is never trusted.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import abc
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

import anyio

from .._io.loop import Mutex, current_time
from .._io.redis import ConnectionLost, interrupted, parse_redis_url
from .._log import logger
from ..config import ClientConfig, check_priority, check_timeout, redact_url
from ..errors import (
    InvalidTaskInputError,
    OperatorConnectionError,
    OperatorError,
    PublishOutcomeUnknownError,
    ResultDecodeError,
    ResultUnavailableError,
    TaskTimeoutError,
)
from ..protocol.celery import TaskShape, encode_task
from ..protocol.operator import (
    DESC_QUERY,
    PROBE_OPTIONS,
    build_task_payload,
    envelope_from_record,
    inspect_probe_result,
    parse_desc_result,
    parse_task_result,
)
from ..protocol.results import READY_STATES, decode_result_record, result_key
from ..protocol.serialization import DecodeError, EncodeError
from ..types import BatchTaskResult, ClientStatistics, HealthCheckResult, LegacyTaskResult
from .broker import LPush, OutcomeUnknown, PreparedTask, Publisher, RedisPublisher
from .command_channel import CommandChannel
from .group_commit import GroupCommit
from .hub import Outcome, ResultHub, Watch
from .tracing import end_task_span, start_call_span, start_task_span, use_call_span

__all__ = ("OperatorCore", "Submission", "TaskSpec", "as_submissions", "new_uuid4")


TaskSpec = Tuple[Any, Any]
"""``(input_artifacts, options)``."""
Submission = Tuple[int, Optional[str], Optional[Exception]]
"""``(index, task_id or None, error or None)`` for one task of a batch."""

_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+socket")


def as_submissions(items: Sequence[Any]) -> List[Submission]:
    """Handles or submitted-task records (of either facade) as ``(index, task_id, error)``."""
    result: List[Submission] = []
    for position, item in enumerate(items):
        task_id = getattr(item, "task_id", None)
        error = getattr(item, "error", None)
        if task_id is None and error is None:
            raise InvalidTaskInputError(f"items[{position}] is neither a task handle nor a submitted task")
        result.append((getattr(item, "index", position), task_id, error))
    return result


class _RandomPool(threading.local):
    """Random bytes drawn from ``os.urandom`` 4 KiB at a time, per thread (threads never share bytes)."""

    def __init__(self) -> None:
        self.data = bytearray()


_random = _RandomPool()


def _forget_pooled_randomness() -> None:
    global _random
    _random = _RandomPool()  # a forked child must never reuse its parent's bytes


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pooled_randomness)


def new_uuid4() -> str:
    """A random (version 4) UUID string, as ``str(uuid.uuid4())`` but without building a UUID object.

    One system call per 256 ids instead of one per id. A forked child never reuses its parent's
    pooled bytes (the pool is dropped after a fork).
    """
    data = _random.data
    if len(data) < 16:
        data = _random.data = bytearray(os.urandom(4096))
    raw = data[-16:]
    del data[-16:]
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _legacy_result(task_id: str, envelope: Any) -> LegacyTaskResult:
    """``(artifacts, results)`` of a task's operator envelope; the typed error it stands for otherwise."""
    return parse_task_result(task_id, envelope).to_legacy_tuple()


class OperatorCore:
    """The client's state and logic: connections, the result hub, the publisher, the desc cache."""

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
        if backend_scheme not in _REDIS_SCHEMES:
            raise ValueError(
                f"unsupported result backend {redact_url(config.result_backend)!r}: "
                "operators write results with Celery's Redis backend (redis://, rediss://, unix://)"
            )
        for serializer in (config.celery.task_serializer, config.celery.result_serializer):
            if serializer not in ("json", "msgpack"):
                raise ValueError(f"unsupported serializer {serializer!r}: use 'json' or 'msgpack' (never pickle)")
        self._channels: Dict[str, CommandChannel] = {}
        self._results = self._command_channel(config.result_backend)
        self._hub = ResultHub(
            self._results.address,
            self._results,
            accept=config.celery.accept_content or ("json", "msgpack"),
            policy=self._policy,
            reconnect_timeout=reconnect_timeout,
        )
        self._publisher = self._make_publisher(config.broker_url)
        self._publishing: GroupCommit[PreparedTask, Optional[Exception]] = GroupCommit(self._publish_batch, interrupted)
        # Broker and backend on the same Redis database: a call's LPUSH can ride with its SUBSCRIBE on the
        # hub's connection (when that speaks RESP3), one write instead of two round trips.
        self._lpush_on_hub: Optional[RedisPublisher] = None
        if isinstance(self._publisher, RedisPublisher) and parse_redis_url(config.broker_url) == self._results.address:
            self._lpush_on_hub = self._publisher
        self._origin = f"gen{os.getpid()}@{socket.gethostname()}"
        self._reply_to = new_uuid4()
        self._shape = TaskShape(config.task_name, self._origin, self._reply_to)  # what all our tasks share
        self._desc: Optional[Dict[str, Any]] = None
        self._desc_lock = Mutex()
        self._closed = False

    def _command_channel(self, url: str) -> CommandChannel:
        channel = self._channels.get(url)
        if channel is None:
            channel = CommandChannel(parse_redis_url(url), self._policy)
            self._channels[url] = channel
        return channel

    def _make_publisher(self, url: str) -> Publisher:
        if urlsplit(url).scheme in _REDIS_SCHEMES:
            return RedisPublisher(self._command_channel(url), settle_timeout=self._policy.io_timeout)
        from .._io.amqp import KombuPublisher  # kombu is imported only for non-Redis brokers

        return KombuPublisher(url, connect_timeout=self._policy.connect_timeout)

    @property
    def hub(self) -> ResultHub:
        """The result hub (exposed for tests and diagnostics)."""
        return self._hub

    @property
    def publisher(self) -> Publisher:
        """The broker's publisher (exposed for tests and diagnostics)."""
        return self._publisher

    # ------------------------------------------------------------------ errors
    def _connection_error(self, reason: object) -> OperatorConnectionError:
        return OperatorConnectionError(self.config.operator_name, self.config.operator_version, str(reason))

    def _result_unavailable(self, task_id: str, reason: object) -> ResultUnavailableError:
        """The task was published, but its result cannot be watched or fetched."""
        return ResultUnavailableError(self.config.operator_name, self.config.operator_version, task_id, str(reason))

    def _not_published(self, task: PreparedTask, reason: object) -> OperatorConnectionError:
        """The task did not reach the queue (``reason``), or may have: ``PublishOutcomeUnknownError``."""
        if isinstance(reason, OutcomeUnknown) or (isinstance(reason, ConnectionLost) and reason.maybe_sent):
            return PublishOutcomeUnknownError(
                self.config.operator_name, self.config.operator_version, task.task_id, str(reason)
            )
        return self._connection_error(reason if isinstance(reason, ConnectionLost) else f"could not publish: {reason}")

    def _check_open(self) -> None:
        if self._closed:
            raise self._connection_error("the client is closed")

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

    # ------------------------------------------------------------------ publishing
    def publish(self, tasks: Sequence[PreparedTask]) -> Awaitable[List[Optional[Exception]]]:
        """Await it: publishes ``tasks``; per task, None or the connection error that kept it from the queue.

        Concurrent callers' tasks go out together (group commit: what queues while one batch is in
        flight is the next batch), so 10,000 concurrent submissions are a handful of pipelines, and their
        outcomes are mapped once per batch. A plain method returning the group commit's coroutine: a
        queued submission is suspended in that one coroutine and ``publish_one``'s (it used to be four,
        and the cyclic GC walks every suspended one).
        """
        self._check_open()
        return self._publishing.submit(tasks)

    async def _publish_batch(self, batches: List[Sequence[PreparedTask]]) -> List[Optional[Exception]]:
        tasks = [task for batch in batches for task in batch]
        if not tasks:
            return []
        return await self._published(tasks, self._publisher.publish(tasks))

    async def _published(
        self, tasks: Sequence[PreparedTask], answer: Awaitable[List[Optional[str]]]
    ) -> List[Optional[Exception]]:
        """Per task, None or the error that kept it from the queue, from the publisher's ``answer`` (awaited
        here: a ``ConnectionLost`` fails them all); ends the tasks' spans."""
        try:
            reasons: Union[List[Optional[str]], ConnectionLost] = await answer
        except ConnectionLost as exc:
            reasons = exc
        if isinstance(reasons, ConnectionLost):
            errors = self._lost_publishing(tasks, reasons)
        else:
            errors = [None if r is None else self._not_published(t, r) for t, r in zip(tasks, reasons)]
        for task, error in zip(tasks, errors):
            if task.span is not None:
                end_task_span(task.span, error)
        if logger.isEnabledFor(logging.DEBUG):
            for task, error in zip(tasks, errors):
                if error is None:
                    logger.debug("task %s submitted to %s", task.task_id, task.queue)
                else:
                    logger.debug("task %s not submitted: %s", task.task_id, error)
        return errors

    def _lost_publishing(self, tasks: Sequence[PreparedTask], lost: ConnectionLost) -> List[Optional[Exception]]:
        """Per task, the error of a publish whose connection was ``lost`` (unknown when it may have gone out)."""
        if lost.maybe_sent:
            return [self._not_published(task, lost) for task in tasks]
        return [self._connection_error(lost)] * len(tasks)

    async def _publish_settled(self, tasks: Sequence[PreparedTask]) -> List[Optional[Exception]]:
        """:meth:`publish`, with a publish interrupted under other callers' feet mapped per task."""
        try:
            return await self.publish(tasks)
        except ConnectionLost as exc:
            return self._lost_publishing(tasks, exc)

    async def _lpush_with_watch(self, tasks: Sequence[PreparedTask], deadline: float) -> Optional[List[LPush]]:
        """The LPUSHes a watch can carry for ``tasks``; None when they go the usual way."""
        if self._lpush_on_hub is None:
            return None
        carries = self._hub.resp3  # known while connected: no await on the hot path
        if carries is None:
            carries = await self._hub.carries_commands(deadline)
        return self._lpush_on_hub.lpush_commands(tasks) if carries else None

    def _carried(
        self, tasks: Sequence[PreparedTask], lpushes: List[LPush], replies: Sequence[object]
    ) -> Awaitable[List[Optional[Exception]]]:
        """Await it: :meth:`publish`'s answer for LPUSHes a watch carried, from their replies."""
        assert self._lpush_on_hub is not None
        return self._published(tasks, self._lpush_on_hub.outcome(tasks, lpushes, replies))

    async def publish_one(self, task: PreparedTask) -> str:
        """Publish one task; its id, or raises the ``OperatorConnectionError`` that kept it from the queue
        (``PublishOutcomeUnknownError`` when it may have reached it)."""
        try:
            (error,) = await self.publish((task,))
        except ConnectionLost as exc:  # a group commit interrupted under its other callers' feet
            (error,) = self._lost_publishing((task,), exc)
        if error is not None:
            raise error
        return task.task_id

    def submit(self, input_artifacts: Any, options: Any, **controls: Any) -> Awaitable[str]:
        """Await it: publishes one task; its id. Invalid input raises at the call, before anything is sent."""
        return self.publish_one(self.prepare(input_artifacts, options, **controls))

    def _check_controls(self, controls: Dict[str, Any]) -> None:
        """A batch's priority and timeout, checked once for the whole batch (not as every task's error)."""
        self.check_priority(controls.get("priority"))
        if controls.get("timeout") is not None:
            check_timeout(controls["timeout"])

    def _prepare_batch(
        self, tasks: Sequence[TaskSpec], controls: Dict[str, Any]
    ) -> Tuple[List[Submission], List[PreparedTask]]:
        submissions: List[Submission] = []
        prepared: List[PreparedTask] = []
        if not isinstance(tasks, abc.Sequence) or isinstance(tasks, (str, bytes)):
            raise InvalidTaskInputError(
                f"tasks must be a list of (input_artifacts, options), not {type(tasks).__name__}"
            )
        for index, spec in enumerate(tasks):
            try:
                if not isinstance(spec, abc.Sequence) or isinstance(spec, (str, bytes)) or len(spec) != 2:
                    raise InvalidTaskInputError(f"tasks[{index}] must be a pair (input_artifacts, options)")
                task = self.prepare(spec[0], spec[1], **controls)
            except OperatorError as exc:
                submissions.append((index, None, exc))
                continue
            prepared.append(task)
            submissions.append((index, task.task_id, None))
        return submissions, prepared

    async def batch_submit(self, tasks: Sequence[TaskSpec], **controls: Any) -> List[Submission]:
        """Validate every task, publish the good ones in one pipeline; per task its id or its error."""
        self._check_controls(controls)
        submissions, prepared = self._prepare_batch(tasks, controls)
        return self._merge_publish_errors(submissions, await self._publish_settled(prepared))

    @staticmethod
    def _merge_publish_errors(submissions: List[Submission], errors: List[Optional[Exception]]) -> List[Submission]:
        """``submissions`` with ``errors`` merged in: one per prepared task (a submission without an
        error), in their order; a task that failed to publish has no id."""
        publish_errors = iter(errors)
        merged: List[Submission] = []
        for submission in submissions:
            error = next(publish_errors) if submission[2] is None else None
            if error is not None:  # a task whose outcome is unknown keeps its id: it may run
                task_id = submission[1] if isinstance(error, PublishOutcomeUnknownError) else None
                submission = (submission[0], task_id, error)
            merged.append(submission)
        return merged

    # ------------------------------------------------------------------ results
    def _outcome_envelope(self, task_id: str, watch: Watch, timeout: float) -> Any:
        outcome = watch.outcomes.get(task_id)
        if outcome is None:
            raise TaskTimeoutError(task_id, timeout)
        return self._envelope(task_id, outcome)

    def _envelope(self, task_id: str, outcome: Outcome) -> Any:
        """The operator's envelope in a task's outcome; the typed error the outcome stands for otherwise."""
        if isinstance(outcome, ConnectionLost):  # the subscription was refused or lost for good
            raise self._result_unavailable(task_id, outcome)
        if isinstance(outcome, Exception):
            raise outcome
        return envelope_from_record(task_id, outcome)

    @staticmethod
    def _deadline(timeout: float) -> float:
        """The hub's deadline (the event loop's clock) for a wait of at most ``timeout`` seconds."""
        return current_time() + max(timeout, 0)

    async def get_result(self, task_id: str, timeout: Optional[float] = None) -> Any:
        """Wait for a published task's raw operator envelope (what Celery's ``AsyncResult.get`` returns).

        ``timeout`` None waits without limit. FAILURE/REVOKED records raise ``TaskExecutionError``.
        """
        self._check_open()
        span = start_call_span("get", self.config.operator_name, self.config.operator_version)
        if span is not None:
            span.set_attribute("messaging.message.id", task_id)
            with use_call_span(span):
                return await self._get_result(task_id, timeout)
        return await self._get_result(task_id, timeout)

    async def _get_result(self, task_id: str, timeout: Optional[float]) -> Any:
        limit = float("inf") if timeout is None else check_timeout(timeout, allow_zero=True)
        deadline = self._deadline(limit)
        try:
            async with self._hub.watch([task_id], fetch_existing=True, deadline=deadline) as watch:
                await self._hub.wait(watch, deadline=deadline)
        except ConnectionLost as exc:
            if current_time() >= deadline:  # the budget ran out while the connection was being remade
                raise TaskTimeoutError(task_id, limit) from None
            raise self._connection_error(exc) from None
        return self._outcome_envelope(task_id, watch, limit)

    async def _call(
        self,
        task: PreparedTask,
        timeout: float,
        published: Optional[List[str]] = None,
        finish: Optional[Callable[[str, Any], Any]] = None,
    ) -> Any:
        """Publish and wait: subscribe (confirmed, so no GET is needed), publish, wait for the PUBLISH.

        On a RESP3 hub connection to the broker's own database, the LPUSH rides in the SUBSCRIBE's
        write: the server orders them, so no confirmation has to be awaited first.

        Reports exactly what happened to the task: not published (``OperatorConnectionError``), maybe
        published (``PublishOutcomeUnknownError``), published but no result can come
        (``ResultUnavailableError``), or published and not answered in time (``TaskTimeoutError``).
        ``published`` (when given) receives the task id once the task is on the queue. Returns the
        operator's envelope, or what ``finish(task_id, envelope)`` makes of it (so that :meth:`sync`
        needs no coroutine of its own around this one).
        """
        self._check_open()
        sent = False  # the task is (or may be) on the queue
        try:
            deadline = self._deadline(timeout)
            carried = await self._lpush_with_watch([task], deadline)
            # Entered and left by hand, not with ``async with``, which would hold a bound ``__aexit__``
            # per pending call for the cyclic GC to walk (the hub's _open releases a watch it fails to open).
            watch = await self._hub.watch(
                [task.task_id], fetch_existing=False, await_replies=False, commands=carried, deadline=deadline
            ).__aenter__()
            try:
                if carried is None:
                    await self.publish_one(task)
                    sent = True
                else:
                    sent = await self._carried_publish(task, carried, watch, deadline)
                if sent and published is not None:
                    published.append(task.task_id)
                await self._hub.wait(watch, deadline=deadline)
            finally:
                try:
                    if sent:  # inside the watch: the DEL can ride with its UNSUBSCRIBE
                        await self._forget_later([task.task_id])
                finally:
                    await watch.__aexit__(None, None, None)
        except ConnectionLost as exc:
            raise (self._result_unavailable(task.task_id, exc) if sent else self._connection_error(exc)) from None
        if task.task_id not in watch.outcomes:
            raise await self._timed_out(task, timeout)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("task %s answered", task.task_id)
        envelope = self._outcome_envelope(task.task_id, watch, timeout)
        return envelope if finish is None else finish(task.task_id, envelope)

    async def _timed_out(self, task: PreparedTask, timeout: float) -> TaskTimeoutError:
        """The timeout of a task this client published, saying where the task is: one pipelined look on a
        Redis broker, given at most a second (or the I/O timeout) past the caller's deadline."""
        whereabouts = getattr(self._publisher, "whereabouts", None)
        place: Optional[str] = None
        waiting: Optional[int] = None
        if whereabouts is not None:
            with anyio.move_on_after(min(1.0, self._policy.io_timeout)):
                try:
                    place, waiting = await whereabouts(task, self.config.broker_url == self.config.result_backend)
                except ConnectionLost:
                    pass
        return TaskTimeoutError(task.task_id, timeout, place, task.queue, waiting)

    async def _carried_publish(self, task: PreparedTask, carried: List[LPush], watch: Watch, deadline: float) -> bool:
        """Wait for the reply to the LPUSH ``watch`` carried: True when the task is on the queue (or its
        fate is unknown because no reply came in time: a timeout follows); raises when it is not."""
        # the LPUSH's reply precedes the task's result on the connection: one wait for both
        await self._hub.wait(watch, or_failed_command=True, deadline=deadline)
        if not watch.replies and watch.outcomes:  # a refused subscription: the LPUSH's reply follows it
            await self._hub.wait_replies(watch, deadline)
        if not watch.replies:
            return True  # no reply in time: the task may be queued
        (error,) = await self._carried([task], carried, watch.replies)
        if error is not None:
            raise error
        return True

    def sync(
        self, input_artifacts: Any, options: Any, *, timeout: Optional[float] = None, **controls: Any
    ) -> Awaitable[LegacyTaskResult]:
        """Await it: submit and wait, ``(artifacts, results)``; typed errors otherwise. Invalid input
        raises at the call, before anything is sent.

        A plain method returning :meth:`_call`'s coroutine: 2,000 concurrent calls are 2,000 coroutines
        fewer for the cyclic GC to walk, and each resumption passes one frame less.
        """
        span = start_call_span("sync", self.config.operator_name, self.config.operator_version)
        if span is not None:
            return self._traced_sync(span, input_artifacts, options, timeout, controls)
        task = self.prepare(input_artifacts, options, timeout=timeout, **controls)
        wait = timeout if timeout is not None else self.config.timeout
        return self._call(task, wait, finish=_legacy_result)

    async def _traced_sync(
        self, span: Any, input_artifacts: Any, options: Any, timeout: Optional[float], controls: Dict[str, Any]
    ) -> LegacyTaskResult:
        """:meth:`sync` inside its CLIENT span (made current, so the task's PRODUCER span is its child)."""
        with use_call_span(span):
            task = self.prepare(input_artifacts, options, timeout=timeout, **controls)
            span.set_attribute("messaging.destination.name", task.queue)
            span.set_attribute("messaging.message.id", task.task_id)
            wait = timeout if timeout is not None else self.config.timeout
            return await self._call(task, wait, finish=_legacy_result)  # type: ignore[no-any-return]

    async def desc(self) -> Dict[str, Any]:
        """The operator's description, asked once per client (concurrent callers share the request)."""
        if self._desc is None:
            async with self._desc_lock:
                if self._desc is None:
                    task = self.prepare_payload(dict(DESC_QUERY), "high")
                    envelope = await self._call(task, self.config.timeout)
                    self._desc = parse_desc_result(task.task_id, envelope).to_dict()
        return self._desc

    async def batch_collect(
        self, submissions: Sequence[Submission], timeout: Optional[float] = None
    ) -> List[BatchTaskResult]:
        """Wait for submitted tasks with one budget for the whole batch; results in input order."""
        self._check_open()
        budget = check_timeout(timeout, allow_zero=True) if timeout is not None else self.config.timeout
        ids = [t for _, t, e in submissions if t is not None and e is None]
        watch: Optional[Watch] = None
        lost: Optional[ConnectionLost] = None
        if ids:
            deadline = self._deadline(budget)
            try:
                async with self._hub.watch(
                    ids, fetch_existing=True, keep=self._batch_keep(), deadline=deadline
                ) as watch:
                    try:
                        await self._hub.wait(watch, deadline=deadline)
                    finally:  # inside the watch: the DEL can ride with its UNSUBSCRIBE
                        await self._forget_later(ids)
            except ConnectionLost as exc:
                lost = exc if current_time() < deadline else None  # None: the budget ran out first
        return [self._batch_result(s, watch, budget, lost) for s in submissions]

    async def batch_sync_detailed(
        self, tasks: Sequence[TaskSpec], *, timeout: Optional[float] = None, **controls: Any
    ) -> List[BatchTaskResult]:
        """Submit a batch and collect it: subscribe all, publish all in one pipeline, wait with one budget."""
        self._check_open()
        self._check_controls(dict(controls, timeout=timeout))
        submissions, prepared = self._prepare_batch(tasks, dict(controls, timeout=timeout))
        budget = timeout if timeout is not None else self.config.timeout
        watch: Optional[Watch] = None
        lost: Optional[ConnectionLost] = None
        errors: List[Optional[Exception]] = [None] * len(prepared)
        ids = [t.task_id for t in prepared]
        forgotten = False
        attempted = False  # a publish was attempted: from then on, a failure is not "nothing was sent"

        async def publish() -> None:
            nonlocal attempted
            attempted = True
            errors[:] = await self._publish_settled(prepared)

        if prepared:
            deadline = self._deadline(budget)
            try:
                carried = await self._lpush_with_watch(prepared, deadline)
                async with self._hub.watch(
                    ids,
                    while_subscribing=publish if carried is None else None,
                    commands=carried,
                    keep=self._batch_keep(),
                    deadline=deadline,
                ) as watch:
                    try:
                        if carried is not None:
                            attempted = True
                            errors[:] = await self._carried(prepared, carried, watch.replies)
                        # Published or not, the messages are done with: freed now (whoever holds the
                        # list), not after the results, they were a fifth of a batch's peak memory.
                        prepared.clear()
                        published = errors.count(None)
                        if published:  # tasks that never went out have no result to wait for
                            await self._hub.wait(watch, published, deadline=deadline)
                    finally:  # inside the watch: the DEL can ride with its UNSUBSCRIBE
                        forgotten = True
                        await self._forget_later([t for t, e in zip(ids, errors) if e is None])
            except ConnectionLost as exc:
                lost = exc if current_time() < deadline else None  # None: the budget ran out first
                if not attempted:  # the subscription failed before anything was sent
                    errors = [self._connection_error(exc)] * len(ids)
            finally:
                if not forgotten:
                    await self._forget_later([t for t, e in zip(ids, errors) if e is None])
        merged = self._merge_publish_errors(submissions, errors)
        return [self._batch_result(s, watch, budget, lost) for s in merged]

    def _batch_keep(self) -> Callable[[str, Outcome], Union[LegacyTaskResult, OperatorError]]:
        """What a batch's watch keeps of a task's outcome as it arrives (``ResultHub.watch``'s ``keep``):
        ``(artifacts, results)`` or the typed error, not the decoded record.

        The batch's results share their keys: one string per distinct key, not one per task (each
        record is decoded on its own, so ``{"echo": ..., "n_artifacts": ...}`` made two new key strings
        for every task of a batch: 240 KB of 2,000). Not ``sys.intern``: interned strings are immortal
        on Python 3.12, and an operator's keys may be unbounded.
        """
        keys: Dict[Any, Any] = {}

        def keep(task_id: str, outcome: Outcome) -> Union[LegacyTaskResult, OperatorError]:
            try:
                artifacts, results = _legacy_result(task_id, self._envelope(task_id, outcome))
            except OperatorError as exc:
                return exc
            return artifacts, {keys.setdefault(key, key): value for key, value in results.items()}

        return keep

    def _batch_result(
        self, submission: Submission, watch: Optional[Watch], budget: float, lost: Optional[ConnectionLost]
    ) -> BatchTaskResult:
        """One task's ``BatchTaskResult`` from what ``watch`` kept of it (``keep=self._batch_keep()``);
        without a watch, the published task's result could not be watched (``lost`` says why), or the
        budget ran out before it could be (``lost`` None)."""
        index, task_id, submit_error = submission
        if task_id is None or submit_error is not None:
            return BatchTaskResult(index=index, task_id=task_id, submitted=False, error=submit_error)
        kept: Any = None
        if watch is not None:
            kept = watch.outcomes.get(task_id)
        elif lost is not None:
            kept = self._result_unavailable(task_id, lost)
        if kept is None:
            kept = TaskTimeoutError(task_id, budget)
        if isinstance(kept, Exception):
            return BatchTaskResult(index=index, task_id=task_id, submitted=True, error=kept)
        artifacts, results = kept
        return BatchTaskResult(index=index, task_id=task_id, submitted=True, artifacts=artifacts, results=results)

    # ------------------------------------------------------------------ result keys
    async def _forget_later(self, task_ids: Sequence[str]) -> None:
        """Delete consumed result keys without a round trip of their own.

        On a RESP3 hub connection the DEL rides with the hub's next write (the watch's UNSUBSCRIBE);
        otherwise with the command channel's next pipeline, or now once ``DEFER_LIMIT`` keys wait and no
        pipeline is going out (if one is, they wait for the next one or for ``aclose``).
        """
        if not self.config.auto_forget_result or not task_ids or self._closed:
            return
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("result key(s) of %d task(s) to delete: %s", len(task_ids), ", ".join(task_ids[:10]))
        if self._hub.forget(task_ids):
            return
        self._results.defer("DEL", *[result_key(t) for t in task_ids])
        if self._results.deferred_backlog >= self._results.DEFER_LIMIT and not self._results.busy:
            await self._results.flush_deferred()

    async def forget(self, task_id: str) -> None:
        """Delete the task's result record."""
        self._check_open()
        try:
            await self._results.execute("DEL", result_key(task_id))
        except ConnectionLost as exc:
            raise self._connection_error(exc) from None

    async def state(self, task_id: str) -> str:
        """The Celery state of a task: PENDING until a record exists, then the record's status."""
        self._check_open()
        try:
            raw = await self._results.execute("GET", result_key(task_id))
        except ConnectionLost as exc:
            raise self._connection_error(exc) from None
        if not isinstance(raw, bytes):
            return "PENDING"
        try:
            return decode_result_record(raw, self.config.celery.accept_content or ("json", "msgpack")).status
        except DecodeError as exc:
            raise ResultDecodeError(task_id, str(exc), raw) from None

    async def raw_record(self, task_id: str) -> Optional[bytes]:
        """The task's result record exactly as stored (None while there is none)."""
        self._check_open()
        try:
            raw = await self._results.execute("GET", result_key(task_id))
        except ConnectionLost as exc:
            raise self._connection_error(exc) from None
        return raw if isinstance(raw, bytes) else None

    async def ready(self, task_id: str) -> bool:
        """True once the task reached a final state (SUCCESS, FAILURE, REVOKED)."""
        return await self.state(task_id) in READY_STATES

    async def cancel(self, cancel_key: str, ttl: Optional[float] = None) -> None:
        """Set ``cancel_key`` (for ``ttl`` seconds, default the client timeout) where operators look for it.

        Operators check ``EXISTS <cancel_key>`` before computing a task that carries the key, and skip it
        with ``TaskCancelledError``: on the result backend's Redis (SDK 0.4.6 and later), on the broker's
        (SDK 0.4.0 and older). The key is set on both when the broker is another Redis URL.
        """
        self._check_open()
        if not isinstance(cancel_key, str) or not cancel_key:
            raise InvalidTaskInputError("cancel_key must be a non-empty string")
        seconds = int(ttl if ttl is not None else (self.config.timeout or 86400))
        if seconds <= 0:
            raise InvalidTaskInputError(f"ttl must be positive, not {ttl!r}")
        channels = [self._results]
        broker_url = self.config.broker_url
        if broker_url != self.config.result_backend and urlsplit(broker_url).scheme in _REDIS_SCHEMES:
            channels.append(self._command_channel(broker_url))
        for channel in channels:
            try:
                reply = await channel.execute("SET", cancel_key, "1", "EX", seconds)
            except ConnectionLost as exc:
                raise self._connection_error(exc) from None
            if reply != "OK":
                raise self._connection_error(f"could not set the cancel key: {reply!r}")

    async def iter_completed(
        self, submissions: Sequence[Submission], timeout: Optional[float] = None
    ) -> AsyncIterator[BatchTaskResult]:
        """Results in completion order, one budget for all (``batch_collect`` semantics).

        Tasks that were never submitted come first; when the budget runs out the rest come as
        ``TaskTimeoutError`` in input order. Close the iterator (``aclose``) when leaving early.
        """
        self._check_open()
        budget = check_timeout(timeout, allow_zero=True) if timeout is not None else self.config.timeout
        waiting = [s for s in submissions if s[1] is not None and s[2] is None]
        for s in submissions:
            if s[1] is None or s[2] is not None:
                yield self._batch_result(s, None, budget, None)
        if not waiting:
            return
        by_id = {s[1]: s for s in waiting if s[1] is not None}
        deadline = self._deadline(budget)
        yielded: set[Optional[str]] = set()
        try:
            async with self._hub.watch(
                list(by_id), fetch_existing=True, in_order=True, keep=self._batch_keep(), deadline=deadline
            ) as watch:
                # no cancel scope may span a yield (the consumer may resume us from another task): each
                # wait is bounded by the one deadline of the batch
                assert watch.arrived is not None
                while len(watch.arrived) or len(watch.outcomes) < len(watch.ids):
                    if not watch.arrived:
                        await self._hub.wait(watch, len(watch.outcomes) + 1, deadline=deadline)
                        if not watch.arrived:
                            break  # the budget is spent
                    task_id = watch.arrived.popleft()
                    await self._forget_later([task_id])
                    yielded.add(task_id)
                    yield self._batch_result(by_id[task_id], watch, budget, None)
                for s in waiting:
                    if s[1] not in watch.outcomes:
                        yielded.add(s[1])
                        yield self._batch_result(s, watch, budget, None)
        except ConnectionLost as exc:
            for s in waiting:
                if s[1] not in yielded:
                    yield self._batch_result(s, None, budget, exc)

    # ------------------------------------------------------------------ health
    async def probe(self, timeout: float = 10) -> HealthCheckResult:
        """Submit a test task at low priority and check that an operator envelope comes back."""
        try:
            task = self.prepare([], dict(PROBE_OPTIONS), priority="low")
        except OperatorError as exc:
            return HealthCheckResult(submit_ok=False, retrieval_ok=False, response_ok=False, error=str(exc))
        published: List[str] = []
        try:
            envelope = await self._call(task, timeout, published)
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
        hub = self._hub.statistics()
        channels = sum(1 for channel in self._channels.values() if channel.connected)
        return ClientStatistics(
            connections=channels + hub.connected,
            watched_channels=hub.watched_channels,
            waiting_calls=hub.waiting_calls,
            queued_commands=hub.queued_commands,
            reconnects=hub.reconnects,
            settled_writes=getattr(self._publisher, "settlements", 0),
        )

    async def withdraw(self, tasks: Sequence[PreparedTask]) -> int:
        """Take published ``tasks`` back off their queues where no operator took them yet (Redis brokers;
        0 elsewhere); how many were withdrawn."""
        self._check_open()
        withdraw = getattr(self._publisher, "withdraw", None)
        if withdraw is None:
            return 0
        try:
            return int(await withdraw(tasks))
        except ConnectionLost as exc:
            raise self._connection_error(exc) from None

    async def queue_depth(self) -> Dict[str, int]:
        """Messages waiting per priority."""
        self._check_open()
        try:
            return {p: await self._publisher.queue_depth(q) for p, q in self.config.queue_names.items()}
        except ConnectionLost as exc:
            raise self._connection_error(exc) from None

    def abandon(self) -> None:
        """Close every connection at once, outside any event loop: for a client whose loop has ended
        (a test's, say) without ``aclose()``; nothing is sent. Idempotent; ``aclose()`` after it is a no-op."""
        if self._closed:
            return
        self._closed = True
        self._hub.abandon()
        abandon = getattr(self._publisher, "abandon", None)
        if abandon is not None:
            abandon()
        for channel in self._channels.values():
            channel.abandon()

    async def aclose(self) -> None:
        """Close every connection; waiters still blocked get ``OperatorConnectionError``."""
        if self._closed:
            return
        await self._hub.aclose()
        await self._publisher.aclose()
        for channel in self._channels.values():
            await channel.aclose()
        self._closed = True
