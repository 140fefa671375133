"""Publishers: put encoded task messages on the broker.

``RedisPublisher`` LPUSHes kombu's Redis envelope straight onto the queue's list through the group-commit
command channel: a batch (the core hands it concurrent submissions together) is one pipeline, shared
with whatever other commands are queued. Other transports (``amqp://`` and friends) go through
``KombuPublisher`` (``_io/amqp.py``), imported only when used.
"""

from __future__ import annotations

from typing import Any, Iterator, List, Mapping, NamedTuple, Optional, Protocol, Sequence, Tuple, Union

import anyio

from .._io.backoff import retry_while_disconnected
from .._io.redis import ConnectionLost
from .._log import logger
from ..protocol.celery import TaskMessage, TaskShape
from ..protocol.kombu_redis import RedisEnvelopeEncoder, priority_list_name, priority_list_names
from ..protocol.resp import Command, RespError
from ..protocol.results import result_key
from .command_channel import CommandChannel

__all__ = ("MAX_LPUSH_VALUES", "LPush", "OutcomeUnknown", "PreparedTask", "Publisher", "RedisPublisher")


class OutcomeUnknown(str):
    """A publisher's reason that leaves the task's fate open: it may be on the queue, and may run."""


MAX_LPUSH_VALUES = 65536
"""Envelopes per LPUSH at most (Redis 6 refuses a command of more than 1,048,576 arguments)."""


class LPush:
    """``LPUSH <list> <envelope>...`` of ``tasks[start:stop]``, a run of tasks bound for one list; their
    envelopes are encoded whenever the command is read (written, or settled) and never kept.

    One command for many tasks, not one each: Redis runs it whole (its reply, before any result of
    those tasks, says all are queued), a consumer pops them in the same order, and a batch's
    messages can be let go as soon as that one reply is in. Rule: no envelope is kept; encoding is
    deterministic, so settling a lost write re-encodes the very bytes that were sent.
    """

    __slots__ = ("_encoder", "_tasks", "list_name", "start", "stop")

    def __init__(self, tasks: Sequence[PreparedTask], start: int, stop: int, encoder: RedisEnvelopeEncoder) -> None:
        self._tasks = tasks
        self._encoder = encoder  # the encoder, not a bound method of it: no object per command
        self.start, self.stop = start, stop
        self.list_name = priority_list_name(tasks[start].queue, 0)

    def __len__(self) -> int:
        return 2 + self.stop - self.start

    def __iter__(self) -> Iterator[Union[str, bytes]]:
        yield "LPUSH"
        yield self.list_name
        for i in range(self.start, self.stop):
            yield _envelope(self._encoder, self._tasks[i])


def _envelope(encoder: RedisEnvelopeEncoder, task: PreparedTask) -> bytes:
    return encoder.encode(task.message, queue=task.queue, delivery_tag=task.delivery_tag)


class Whereabouts(NamedTuple):
    """Where a published task is: ``place`` ``"queued"``, ``"taken"``, ``"finished"``, ``"no trace"``
    (None: could not tell), and how many messages wait in its queue."""

    place: Optional[str]
    waiting: int


class PreparedTask(NamedTuple):
    """A validated, encoded task ready to publish to ``queue``: its message's fields, then where it goes.

    Flat (``PreparedTask.of``), not a message inside a tuple: a batch holds thousands until they are
    published (the batch's peak memory has a budget in tests/faults/test_budgets.py).
    """

    task_id: str
    body: bytes
    content_type: str
    content_encoding: str
    argsrepr: str
    kwargsrepr: str
    shape: TaskShape
    extra_headers: Optional[Mapping[str, Any]]
    queue: str
    delivery_tag: str
    span: Any = None  # the OpenTelemetry client span, when tracing is active

    @classmethod
    def of(cls, message: TaskMessage, queue: str, delivery_tag: str, span: Any = None) -> PreparedTask:
        """``message``, ready to publish to ``queue``."""
        return cls(*message, queue, delivery_tag, span)

    @property
    def message(self) -> TaskMessage:
        """The task's Celery message."""
        return TaskMessage._make(self[:_MESSAGE_FIELDS])


_MESSAGE_FIELDS = len(TaskMessage._fields)


class Publisher(Protocol):
    """What the core needs from a broker. The core calls ``publish`` for one batch at a time."""

    async def publish(self, tasks: Sequence[PreparedTask]) -> List[Optional[str]]:
        """Publish in order; one entry per task: None when published, else why not (an
        :class:`OutcomeUnknown` when it may have been published after all).

        Raises ``ConnectionLost`` when nothing could be published (``maybe_sent``: or the outcome of
        every task is unknown).
        """

    settlements: int
    """Publishes whose connection was cut after writing, whose outcome was then settled (statistics)."""

    async def queue_depth(self, queue: str) -> int:
        """Messages waiting in ``queue`` (all its priority lists)."""

    async def whereabouts(self, task: PreparedTask, result_on_broker: bool) -> Tuple[Optional[str], Optional[int]]:
        """Where a published ``task`` is and how many messages wait in its queue; ``(None, None)``: cannot tell."""

    async def withdraw(self, tasks: Sequence[PreparedTask]) -> int:
        """Take ``tasks`` back off their queues where no consumer took them yet; how many (0: cannot)."""

    def abandon(self) -> None:
        """Drop connections at once, outside any event loop."""

    async def aclose(self) -> None:
        """Release connections."""


class RedisPublisher:
    """LPUSH onto kombu's Redis lists, a batch per pipeline.

    When the connection breaks after the pipeline was written, whether each LPUSH happened is unknown;
    the publisher then settles it before answering, so no task is reported both failed and run: once
    the server is back it withdraws the task from its list (``LREM``: then it definitely did not go
    out), or finds it already taken by an operator (kombu's ``unacked`` hash) or finished (its result
    key): then it did.
    """

    def __init__(self, commands: CommandChannel, *, settle_timeout: float = 30.0) -> None:
        self._commands = commands
        self._settle_timeout = settle_timeout
        self.settlements = 0  # publishes cut after writing whose outcome had to be settled (statistics)
        self._envelopes = RedisEnvelopeEncoder()

    async def publish(self, tasks: Sequence[PreparedTask]) -> List[Optional[str]]:
        """One LPUSH per run of tasks bound for the same list (usually one for all), in one pipeline."""
        commands = self.lpush_commands(tasks)
        try:
            replies = await self._commands.execute_many(commands)
        except ConnectionLost as exc:
            if not exc.maybe_sent:
                raise
            return await self._settle(tasks, exc)
        return await self.outcome(tasks, commands, replies)

    def lpush_commands(self, tasks: Sequence[PreparedTask]) -> List[LPush]:
        """The LPUSHes of ``tasks``, in order: one per run of tasks bound for the same list (of at most
        ``MAX_LPUSH_VALUES``), their envelopes encoded as they are written."""
        commands: List[LPush] = []
        start, count = 0, len(tasks)
        while start < count:
            queue, stop = tasks[start].queue, start + 1
            limit = min(count, start + MAX_LPUSH_VALUES)
            while stop < limit and tasks[stop].queue == queue:
                stop += 1
            commands.append(LPush(tasks, start, stop, self._envelopes))
            start = stop
        return commands

    async def outcome(
        self, tasks: Sequence[PreparedTask], commands: Sequence[LPush], replies: Sequence[object]
    ) -> List[Optional[str]]:
        """Per task, None when the reply to its LPUSH says published, else why not.

        ``replies`` (one per command) may come from any connection (the result hub carries LPUSHes
        too); a ``ConnectionLost`` in place of a reply is settled when the command may have been sent.
        """
        reasons: List[Optional[str]] = []
        unknown: List[int] = []
        lost: Optional[ConnectionLost] = None
        for command, reply in zip(commands, replies):
            if isinstance(reply, ConnectionLost):
                if reply.maybe_sent:
                    unknown += range(command.start, command.stop)
                    lost = reply
                reason: Optional[str] = f"{reply}"
            else:
                reason = reply.message if isinstance(reply, RespError) else None
            reasons += [reason] * (command.stop - command.start)
        if len(replies) < len(commands):  # the caller's deadline came first: the LPUSH may be queued
            reasons += [OutcomeUnknown("no reply from the broker before the deadline")] * (len(tasks) - len(reasons))
        if lost is not None:
            settled = await self._settle([tasks[i] for i in unknown], lost)
            for i, reason in zip(unknown, settled):
                reasons[i] = reason
        return reasons

    async def _settle(self, tasks: Sequence[PreparedTask], lost: ConnectionLost) -> List[Optional[str]]:
        checks: List[Command] = []
        for task in tasks:
            checks += [
                ("LREM", priority_list_name(task.queue, 0), 1, _envelope(self._envelopes, task)),
                ("HEXISTS", "unacked", task.delivery_tag),
                ("EXISTS", result_key(task.task_id)),
            ]
        replies: Optional[List[object]] = None
        self.settlements += 1
        with anyio.move_on_after(self._settle_timeout):
            replies = await retry_while_disconnected(lambda: self._commands.execute_many(checks))
        if replies is None:
            logger.warning(
                "a publish of %d task(s) was cut (%s) and the server did not come back within %gs: "
                "whether they were queued is unknown",
                len(tasks),
                lost,
                self._settle_timeout,
            )
            raise lost  # the server did not come back: the outcome stays unknown
        reasons: List[Optional[str]] = []
        for i in range(len(tasks)):
            removed, taken, finished = replies[3 * i : 3 * i + 3]
            if taken == 1 or finished == 1:
                reasons.append(None)
            elif removed == 1:
                reasons.append(f"connection lost while publishing ({lost}); the task was withdrawn")
            elif lost.timed_out:  # the write may still be on its way: not there yet proves nothing
                reasons.append(
                    OutcomeUnknown(
                        f"the server stopped answering while publishing ({lost}); the "
                        "task is not on the queue yet, but the write may still arrive"
                    )
                )
            else:
                reasons.append(f"connection lost while publishing ({lost}); the task never reached the queue")
        logger.warning(
            "a publish of %d task(s) was cut (%s); settled: %d published, %d withdrawn or never queued, %d unknown",
            len(tasks),
            lost,
            reasons.count(None),
            sum(1 for r in reasons if type(r) is str),
            sum(1 for r in reasons if isinstance(r, OutcomeUnknown)),
        )
        return reasons

    async def whereabouts(self, task: PreparedTask, result_on_broker: bool) -> Whereabouts:
        """Where a published ``task`` is, in one pipeline: on its list (``LPOS``), in kombu's ``unacked``
        hash (taken by an operator), finished (its result key, when results live on this server)."""
        lists = priority_list_names(task.queue)
        commands: List[Command] = [
            ("LPOS", priority_list_name(task.queue, 0), _envelope(self._envelopes, task)),
            ("HEXISTS", "unacked", task.delivery_tag),
            *[("LLEN", name) for name in lists],
        ]
        if result_on_broker:
            commands.append(("EXISTS", result_key(task.task_id)))
        replies = await self._commands.execute_many(commands)
        waiting = sum(r for r in replies[2 : 2 + len(lists)] if isinstance(r, int))
        finished = result_on_broker and replies[-1] == 1
        if finished:
            return Whereabouts("finished", waiting)
        if replies[1] == 1:
            return Whereabouts("taken", waiting)
        if isinstance(replies[0], int):
            return Whereabouts("queued", waiting)
        if replies[0] is None:
            return Whereabouts("no trace" if result_on_broker else None, waiting)
        return Whereabouts(None, waiting)  # LPOS refused (Redis < 6.0.6): unknown

    async def withdraw(self, tasks: Sequence[PreparedTask]) -> int:
        """Take ``tasks`` off their lists where no operator took them yet (``LREM`` of their envelopes,
        encoded again: the encoding is deterministic); how many were still there."""
        if not tasks:
            return 0
        replies = await self._commands.execute_many(
            [("LREM", priority_list_name(t.queue, 0), 1, _envelope(self._envelopes, t)) for t in tasks]
        )
        return sum(1 for reply in replies if reply == 1)

    def abandon(self) -> None:
        """Nothing of its own to drop: its command channel is the core's, which abandons it."""

    async def queue_depth(self, queue: str) -> int:
        """LLEN of every priority list of ``queue``, summed."""
        replies = await self._commands.execute_many([("LLEN", name) for name in priority_list_names(queue)])
        return sum(r for r in replies if isinstance(r, int))

    async def aclose(self) -> None:
        """The command channel is owned (and closed) by the core."""
