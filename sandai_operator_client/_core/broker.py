"""Publishers: put encoded task messages on the broker.

``RedisPublisher`` LPUSHes kombu's Redis envelope straight onto the queue's list through the group-commit
command channel, so concurrent submissions and whole batches go out as one pipeline. Other transports
(``amqp://`` and friends) go through ``KombuPublisher`` (``_core/amqp.py``), imported only when used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Protocol, Sequence, Tuple

from ..protocol.celery import TaskMessage
from ..protocol.kombu_redis import encode_redis_envelope, priority_list_name, priority_list_names
from ..protocol.resp import RespError
from .redis import CommandChannel

__all__ = ("PreparedTask", "Publisher", "RedisPublisher")


@dataclass(frozen=True)
class PreparedTask:
    """A validated, encoded task ready to publish to ``queue``."""

    task_id: str
    queue: str
    message: TaskMessage
    delivery_tag: str
    span: Any = None  # the OpenTelemetry client span, when tracing is active


class Publisher(Protocol):
    """What the core needs from a broker."""

    async def publish(self, tasks: Sequence[PreparedTask]) -> List[Optional[str]]:
        """Publish in order; one entry per task: None when published, else why not.

        Raises ``ConnectionLost`` when nothing could be published.
        """

    async def queue_depth(self, queue: str) -> int:
        """Messages waiting in ``queue`` (all its priority lists)."""

    async def aclose(self) -> None:
        """Release connections."""


class RedisPublisher:
    """LPUSH onto kombu's Redis lists, pipelined with every other concurrent submission."""

    def __init__(self, commands: CommandChannel) -> None:
        self._commands = commands

    async def publish(self, tasks: Sequence[PreparedTask]) -> List[Optional[str]]:
        """One LPUSH per task, all in one pipeline."""
        commands: List[Tuple[object, ...]] = [
            (
                "LPUSH",
                priority_list_name(t.queue, 0),
                encode_redis_envelope(t.message, queue=t.queue, delivery_tag=t.delivery_tag),
            )
            for t in tasks
        ]
        replies = await self._commands.execute_many(commands)
        return [reply.message if isinstance(reply, RespError) else None for reply in replies]

    async def queue_depth(self, queue: str) -> int:
        """LLEN of every priority list of ``queue``, summed."""
        replies = await self._commands.execute_many([("LLEN", name) for name in priority_list_names(queue)])
        return sum(r for r in replies if isinstance(r, int))

    async def aclose(self) -> None:
        """The command channel is owned (and closed) by the core."""
