"""What the I/O layer's ``ConnectionLost`` means to a caller, said in one place (httpcore's
``map_exceptions`` is the model): not published, maybe published, published but no result can come."""

from __future__ import annotations

from types import TracebackType
from typing import List, Optional, Sequence, Type

from .._io.errors import ConnectionLost
from ..errors import OperatorConnectionError, PublishOutcomeUnknownError, ResultUnavailableError
from .broker import OutcomeUnknown, PreparedTask

__all__ = ("Failures",)


class Failures:
    """The public errors of one operator's client."""

    __slots__ = ("_name", "_version")

    def __init__(self, operator_name: str, operator_version: str) -> None:
        self._name, self._version = operator_name, operator_version

    def connection(self, reason: object) -> OperatorConnectionError:
        """Nothing was sent, or what was asked of Redis failed."""
        return OperatorConnectionError(self._name, self._version, str(reason))

    def unavailable(self, task_id: str, reason: object) -> ResultUnavailableError:
        """The task was published, but its result cannot be watched or fetched."""
        return ResultUnavailableError(self._name, self._version, task_id, str(reason))

    def not_published(self, task: PreparedTask, reason: object) -> OperatorConnectionError:
        """The task did not reach the queue (``reason``), or may have: ``PublishOutcomeUnknownError``."""
        if isinstance(reason, OutcomeUnknown) or (isinstance(reason, ConnectionLost) and reason.maybe_sent):
            return PublishOutcomeUnknownError(self._name, self._version, task.task_id, str(reason))
        return self.connection(reason if isinstance(reason, ConnectionLost) else f"could not publish: {reason}")

    def lost_publishing(self, tasks: Sequence[PreparedTask], lost: ConnectionLost) -> List[Optional[Exception]]:
        """Per task, the error of a publish whose connection was ``lost`` (unknown when it may have gone out)."""
        if lost.maybe_sent:
            return [self.not_published(task, lost) for task in tasks]
        return [self.connection(lost)] * len(tasks)

    def mapped(self) -> MapConnectionLost:
        """``with failures.mapped():`` a ``ConnectionLost`` inside raises ``OperatorConnectionError``."""
        return MapConnectionLost(self)


class MapConnectionLost:
    """The context manager of :meth:`Failures.mapped`."""

    __slots__ = ("_failures",)

    def __init__(self, failures: Failures) -> None:
        self._failures = failures

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        if isinstance(exc, ConnectionLost):
            raise self._failures.connection(exc) from None
