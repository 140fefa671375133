"""The blocking client's task handle (shaped like Celery's ``AsyncResult``) and submitted-task record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from ._core.core import OperatorCore
from ._gone import gone
from .errors import OperatorError

if TYPE_CHECKING:
    from ._sync import OperatorClient

__all__ = ("SubmittedTask", "TaskHandle", "TaskState")


class TaskState(str):
    """A Celery state name that is also callable.

    Celery's ``AsyncResult.state`` is a property and the seed's async handle had ``state()``; a
    ``TaskState`` serves both spellings: ``handle.state == "SUCCESS"`` and ``handle.state() == "SUCCESS"``.
    """

    def __call__(self) -> str:
        return str(self)


class TaskHandle:
    """A submitted task, shaped like Celery's ``AsyncResult``: ``id``, ``get`` (``wait``), ``ready``, ``state``,
    ``successful``, ``failed``, ``forget``. What needs Celery (``revoke``, ``result``, ``info``, ``traceback``,
    ``date_done``) raises ``AttributeError`` naming what to use instead."""

    __slots__ = ("_client", "id")

    def __init__(self, client: OperatorClient, task_id: str) -> None:
        self._client = client
        self.id = task_id

    @property
    def task_id(self) -> str:
        """The task id."""
        return self.id

    def get(self, timeout: Optional[float] = None, propagate: bool = True) -> Any:
        """Block until the operator's raw result envelope arrives (None waits without limit).

        With ``propagate=False`` a task failure is returned instead of raised, as Celery does.

        Raises:
            TaskTimeoutError: no result within ``timeout``.
            TaskExecutionError: a FAILURE or REVOKED record.
            ResultDecodeError: a record that cannot be decoded.
            OperatorConnectionError: the result backend cannot be reached.
        """
        try:
            return self._client._run(OperatorCore.get_result, self.id, timeout)
        except OperatorError as exc:
            if propagate:
                raise
            return exc

    def ready(self) -> bool:
        """True once the task reached a final state."""
        return self._client._run(OperatorCore.ready, self.id)

    def successful(self) -> bool:
        """True when the task's record is SUCCESS."""
        return bool(self.state == "SUCCESS")

    def failed(self) -> bool:
        """True when the task's record is FAILURE."""
        return bool(self.state == "FAILURE")

    @property
    def state(self) -> TaskState:
        """The Celery state (PENDING until a record exists)."""
        return TaskState(self._client._run(OperatorCore.state, self.id))

    status = state

    def forget(self) -> None:
        """Delete the result record."""
        self._client._run(OperatorCore.forget, self.id)

    def wait(self, timeout: Optional[float] = None, propagate: bool = True) -> Any:
        """Celery's old name for :meth:`get`."""
        return self.get(timeout, propagate)

    revoke = gone("revoke", "tag tasks with a cancel_key and call client.cancel(cancel_key): operators skip them")
    result = gone("result", "use get(timeout=0), which returns the result if it is there (else TaskTimeoutError)")
    info = gone("info", "use get(timeout=0), which returns the result if it is there (else TaskTimeoutError)")
    traceback = gone("traceback", "a failed task raises its typed error from get(); operators send no traceback")
    date_done = gone("date_done", "not kept: the result record's date is not read")

    def __repr__(self) -> str:
        return f"<TaskHandle {self.id}>"


@dataclass(frozen=True)
class SubmittedTask:
    """One task of a sync ``batch_submit``: its handle, or the error that kept it from being sent."""

    index: int
    async_result: Optional[TaskHandle] = None
    error: Optional[Exception] = None

    @property
    def submitted(self) -> bool:
        """True when the task was published."""
        return self.async_result is not None and self.error is None

    @property
    def task_id(self) -> Optional[str]:
        """The task id, when submitted."""
        return None if self.async_result is None else self.async_result.id
