"""Publishing: tasks onto the broker, and what became of each.

Rules: concurrent callers' tasks go out together (group commit: what queues while one publish is in
flight is the next one), and their outcomes are mapped once per publish; a queued caller is suspended in
one coroutine (``publish`` returns the group commit's). Every task gets exactly one answer: None (on the
queue), ``PublishOutcomeUnknownError`` (it may be), or the ``OperatorConnectionError`` that kept it off;
its PRODUCER span ends with that answer.
"""

from __future__ import annotations

import logging
from typing import Awaitable, List, Optional, Sequence, Union

from .._io.errors import ConnectionLost, interrupted
from .._log import logger
from .broker import LPush, PreparedTask, Publisher, RedisPublisher
from .failures import Failures
from .group_commit import GroupCommit
from .hub import ResultHub
from .tracing import end_task_span

__all__ = ("Publishing",)


class Publishing:
    """The core's way to the broker: its publisher behind a group commit, or (``lpush_on_hub``: the
    broker is the result backend's own Redis database) LPUSHes carried on the hub's connection."""

    def __init__(
        self, publisher: Publisher, hub: ResultHub, failures: Failures, lpush_on_hub: Optional[RedisPublisher]
    ) -> None:
        self._publisher = publisher
        self._hub = hub
        self._failures = failures
        self._lpush_on_hub = lpush_on_hub
        self._commit: GroupCommit[PreparedTask, Optional[Exception]] = GroupCommit(self._publish_batch, interrupted)

    def publish(self, tasks: Sequence[PreparedTask]) -> Awaitable[List[Optional[Exception]]]:
        """Await it: publishes ``tasks`` with whatever other callers queued meanwhile; per task, None or
        its error. Raises ``ConnectionLost`` when the publish was interrupted under its callers' feet."""
        return self._commit.submit(tasks)

    async def settled(self, tasks: Sequence[PreparedTask]) -> List[Optional[Exception]]:
        """:meth:`publish`, with a publish interrupted under other callers' feet mapped per task."""
        try:
            return await self._commit.submit(tasks)
        except ConnectionLost as exc:
            return self._failures.lost_publishing(tasks, exc)

    async def carried_lpushes(self, tasks: Sequence[PreparedTask], deadline: float) -> Optional[List[LPush]]:
        """The LPUSHes a watch can carry for ``tasks``; None when they go the usual way."""
        if self._lpush_on_hub is None:
            return None
        carries = self._hub.resp3  # known while connected: no await
        if carries is None:
            carries = await self._hub.carries_commands(deadline)
        return self._lpush_on_hub.lpush_commands(tasks) if carries else None

    def carried(
        self, tasks: Sequence[PreparedTask], lpushes: List[LPush], replies: Sequence[object]
    ) -> Awaitable[List[Optional[Exception]]]:
        """Await it: :meth:`publish`'s answer for LPUSHes a watch carried, from their replies."""
        assert self._lpush_on_hub is not None
        return self._published(tasks, self._lpush_on_hub.outcome(tasks, lpushes, replies))

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
            errors = self._failures.lost_publishing(tasks, reasons)
        else:
            errors = [None if r is None else self._failures.not_published(t, r) for t, r in zip(tasks, reasons)]
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
