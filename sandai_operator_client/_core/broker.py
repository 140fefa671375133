"""Publishers: put encoded task messages on the broker.

``RedisPublisher`` LPUSHes kombu's Redis envelope straight onto the queue's list through the group-commit
command channel: a batch (the core hands it concurrent submissions together) is one pipeline, shared
with whatever other commands are queued. Other transports (``amqp://`` and friends) go through
``KombuPublisher`` (``_core/amqp.py``), imported only when used.
"""

from __future__ import annotations

from typing import Any, Iterator, List, NamedTuple, Optional, Protocol, Sequence, Tuple, Union, overload

import anyio

from ..protocol.celery import TaskMessage
from ..protocol.kombu_redis import RedisEnvelopeEncoder, priority_list_name, priority_list_names
from ..protocol.resp import RespError
from ..protocol.results import result_key
from .backoff import retry_while_disconnected
from .redis import CommandChannel, ConnectionLost

__all__ = ("LPush", "LPushes", "PreparedTask", "Publisher", "RedisPublisher")


LPush = Tuple[str, str, bytes]
"""``("LPUSH", list name, envelope)``: one task's publication on Redis."""


class LPushes(Sequence[LPush]):
    """The LPUSH of each task, its envelope encoded whenever it is read and never kept.

    Envelopes are a kilobyte each: kept, the 10 MB of a 10,000-task batch stayed alive until its last
    reply, a seventh of the client's peak memory. Encoding is deterministic, so settling a lost
    pipeline re-encodes the very bytes that were sent.
    """

    __slots__ = ("_encoder", "_tasks")

    def __init__(self, tasks: Sequence[PreparedTask], encoder: RedisEnvelopeEncoder) -> None:
        self._tasks = tasks
        self._encoder = encoder  # not its bound method: one object less per pending call for the GC

    def __len__(self) -> int:
        return len(self._tasks)

    def _lpush(self, task: PreparedTask) -> LPush:
        return ("LPUSH", priority_list_name(task.queue, 0),
                self._encoder.encode(task.message, queue=task.queue, delivery_tag=task.delivery_tag))

    @overload
    def __getitem__(self, index: int) -> LPush: ...

    @overload
    def __getitem__(self, index: slice) -> List[LPush]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[LPush, List[LPush]]:
        if isinstance(index, slice):
            return [self._lpush(task) for task in self._tasks[index]]
        return self._lpush(self._tasks[index])

    def __iter__(self) -> Iterator[LPush]:
        return map(self._lpush, self._tasks)


class PreparedTask(NamedTuple):
    """A validated, encoded task ready to publish to ``queue``."""

    task_id: str
    queue: str
    message: TaskMessage
    delivery_tag: str
    span: Any = None  # the OpenTelemetry client span, when tracing is active


class Publisher(Protocol):
    """What the core needs from a broker. The core calls ``publish`` for one batch at a time."""

    async def publish(self, tasks: Sequence[PreparedTask]) -> List[Optional[str]]:
        """Publish in order; one entry per task: None when published, else why not.

        Raises ``ConnectionLost`` when nothing could be published.
        """

    async def queue_depth(self, queue: str) -> int:
        """Messages waiting in ``queue`` (all its priority lists)."""

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
        self._envelopes = RedisEnvelopeEncoder()

    async def publish(self, tasks: Sequence[PreparedTask]) -> List[Optional[str]]:
        """One LPUSH per task, all in one pipeline."""
        commands = self.lpush_commands(tasks)
        try:
            replies = await self._commands.execute_many(commands)
        except ConnectionLost as exc:
            if not exc.maybe_sent:
                raise
            return await self._settle(tasks, commands, exc)
        return await self.outcome(tasks, commands, replies)

    def lpush_commands(self, tasks: Sequence[PreparedTask]) -> LPushes:
        """The LPUSH of each task, encoded as it is written (settling looks for the same envelope if
        its connection fails)."""
        return LPushes(tasks, self._envelopes)

    async def outcome(self, tasks: Sequence[PreparedTask], commands: Sequence[LPush], replies: Sequence[object]
                      ) -> List[Optional[str]]:
        """Per task, None when its LPUSH reply says published, else why not.

        ``replies`` may come from any connection (the result hub carries LPUSHes too); a
        ``ConnectionLost`` in place of a reply is settled when the command may have been sent.
        """
        reasons: List[Optional[str]] = []
        unknown: List[int] = []
        for i, reply in enumerate(replies):
            if isinstance(reply, ConnectionLost):
                if reply.maybe_sent:
                    unknown.append(i)
                reasons.append(f"{reply}")
            else:
                reasons.append(reply.message if isinstance(reply, RespError) else None)
        if unknown:
            lost = replies[unknown[0]]
            assert isinstance(lost, ConnectionLost)
            settled = await self._settle([tasks[i] for i in unknown], [commands[i] for i in unknown], lost)
            for i, reason in zip(unknown, settled):
                reasons[i] = reason
        return reasons

    async def _settle(self, tasks: Sequence[PreparedTask], commands: Sequence[LPush], lost: ConnectionLost
                      ) -> List[Optional[str]]:
        checks: List[Tuple[object, ...]] = []
        for task, (_, queue_list, envelope) in zip(tasks, commands):
            checks += [("LREM", queue_list, 1, envelope),
                       ("HEXISTS", "unacked", task.delivery_tag),
                       ("EXISTS", result_key(task.task_id))]
        replies: Optional[List[object]] = None
        with anyio.move_on_after(self._settle_timeout):
            replies = await retry_while_disconnected(lambda: self._commands.execute_many(checks))
        if replies is None:
            raise lost  # the server did not come back: the outcome stays unknown
        reasons: List[Optional[str]] = []
        for i in range(len(tasks)):
            removed, taken, finished = replies[3 * i : 3 * i + 3]
            if taken == 1 or finished == 1:
                reasons.append(None)
            elif removed == 1:
                reasons.append(f"connection lost while publishing ({lost}); the task was withdrawn")
            else:
                reasons.append(f"connection lost while publishing ({lost}); the task never reached the queue")
        return reasons

    async def queue_depth(self, queue: str) -> int:
        """LLEN of every priority list of ``queue``, summed."""
        replies = await self._commands.execute_many([("LLEN", name) for name in priority_list_names(queue)])
        return sum(r for r in replies if isinstance(r, int))

    async def aclose(self) -> None:
        """The command channel is owned (and closed) by the core."""
