"""The exception hierarchy.

Every error the client raises is an :class:`OperatorError`. The names and constructor signatures of the
seed client (0.4.6) are kept, so ``except TaskExecutionError`` code keeps working; the few additions are
subclasses of the seed's classes where they refine one (a delivery-limit failure *is* a task execution
failure, an undecodable record *is* an invalid result format, a bad argument is also a ``ValueError``).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing alone costs milliseconds
if TYPE_CHECKING:  # annotations only: importing the package loads nothing but this module
    from typing import Any, Dict, List, Optional, Sequence

__all__ = (
    "BatchProcessingError",
    "InvalidPriorityError",
    "InvalidResultFormatError",
    "InvalidTaskInputError",
    "InvalidTaskStatusError",
    "OperatorConnectionError",
    "OperatorError",
    "PublishOutcomeUnknownError",
    "ResultDecodeError",
    "ResultUnavailableError",
    "StopException",
    "TaskCancelledError",
    "TaskDeadlineExceededError",
    "TaskDeliveryLimitExceededError",
    "TaskExecutionError",
    "TaskTimeoutError",
)


class OperatorError(Exception):
    """Base class for all operator-client errors."""


class TaskExecutionError(OperatorError):
    """The operator (or Celery on its behalf) reported that the task failed."""

    def __init__(
        self,
        task_id: str,
        error_message: str,
        error_details: Optional[Dict[str, Any]] = None,
        *,
        error_type: Optional[str] = None,
    ):
        self.task_id = task_id
        self.error_message = error_message
        self.error_details: Dict[str, Any] = error_details or {}
        self.error_type = error_type
        """The operator's ``error_type`` (or the Celery exception type), when known."""
        super().__init__(f"Task {task_id} failed: {error_message}")

    def __reduce__(self) -> Any:
        return (
            _rebuild_execution_error,
            (type(self), self.task_id, self.error_message, self.error_details, self.error_type),
        )


def _rebuild_execution_error(
    cls: Any, task_id: str, message: str, details: Dict[str, Any], error_type: Optional[str]
) -> TaskExecutionError:
    return cls(task_id, message, details, error_type=error_type)  # type: ignore[no-any-return]


class TaskDeliveryLimitExceededError(TaskExecutionError):
    """The operator gave up on the task after too many redeliveries (``TaskDeliveryLimitExceededError``)."""


class TaskTimeoutError(OperatorError):
    """Waiting for a task result took longer than the caller allowed.

    ``whereabouts`` says where the task was when the wait ended, when the client could look (a Redis
    broker, a task this client published): ``"queued"`` (no operator took it; ``queue`` and
    ``queue_waiting`` say where and how many wait there), ``"taken"`` (an operator took it and has not
    answered), ``"finished"`` (its result was written as the wait ended), ``"no trace"`` (neither queued,
    taken nor answered); None when the client could not look.
    """

    def __init__(
        self,
        task_id: str,
        timeout: float,
        whereabouts: Optional[str] = None,
        queue: Optional[str] = None,
        queue_waiting: Optional[int] = None,
    ):
        self.task_id = task_id
        self.timeout = timeout
        self.whereabouts = whereabouts
        self.queue = queue
        self.queue_waiting = queue_waiting
        message = f"Task {task_id} timed out after {timeout} seconds"
        if whereabouts == "queued":
            message += f": still queued ({queue_waiting} waiting in {queue}; no operator took it)"
        elif whereabouts == "taken":
            message += ": taken by an operator, no result yet"
        elif whereabouts == "finished":
            message += ": its result was written as the wait ended"
        elif whereabouts == "no trace":
            message += f": no trace of it (not in {queue}, not taken, no result)"
        super().__init__(message)

    def __reduce__(self) -> Any:
        return (type(self), (self.task_id, self.timeout, self.whereabouts, self.queue, self.queue_waiting))


class InvalidTaskStatusError(OperatorError):
    """The operator's result envelope carries a status other than ``success``/``error``."""

    def __init__(self, task_id: str, status: str):
        self.task_id = task_id
        self.status = status
        super().__init__(f"Task {task_id} has unknown status: {status}")

    def __reduce__(self) -> Any:
        return (type(self), (self.task_id, self.status))


class InvalidResultFormatError(OperatorError):
    """The operator's result is not a mapping."""

    def __init__(self, task_id: str, result: Any):
        self.task_id = task_id
        self.result = result
        super().__init__(f"Task {task_id} returned invalid result format: {type(result)}")

    def __reduce__(self) -> Any:
        return (type(self), (self.task_id, self.result))


class ResultDecodeError(InvalidResultFormatError):
    """A result record could not be decoded (garbage, truncated, unknown content type, or pickle).

    Nothing is ever unpickled or evaluated: such records are refused with this error.
    """

    def __init__(self, task_id: str, reason: str, raw: bytes = b""):
        self.reason = reason
        self.raw = raw
        OperatorError.__init__(self, f"Task {task_id} result record could not be decoded: {reason}")
        self.task_id = task_id
        self.result = raw

    def __reduce__(self) -> Any:
        return (type(self), (self.task_id, self.reason, self.raw))


class OperatorConnectionError(OperatorError):
    """The broker or the result backend cannot be reached (or refused us)."""

    def __init__(self, operator_name: str, operator_version: str, reason: Optional[str] = None):
        self.operator_name = operator_name
        self.operator_version = operator_version
        self.reason = reason
        message = f"Failed to connect to operator {operator_name} v{operator_version}"
        if reason:
            message += f": {reason}"
        super().__init__(message)

    def __reduce__(self) -> Any:
        return (type(self), (self.operator_name, self.operator_version, self.reason))


class _TaskConnectionError(OperatorConnectionError):
    """A connection error that says what became of one task (``task_id``): see the subclasses."""

    _what = "task {task_id}: {reason}"

    def __init__(self, operator_name: str, operator_version: str, task_id: str, reason: Optional[str] = None):
        self.task_id = task_id
        super().__init__(operator_name, operator_version, self._what.format(task_id=task_id, reason=reason))
        self.reason = reason

    def __reduce__(self) -> Any:
        return (type(self), (self.operator_name, self.operator_version, self.task_id, self.reason))


class ResultUnavailableError(_TaskConnectionError):
    """The task *was* published (it is queued and will run) but its result could not be watched or
    fetched: the result backend refused the subscription (an ACL without pub/sub, say) or was lost.

    ``task_id`` names the task: its result can still be fetched later (``get_result``) from its key.
    """

    _what = "task {task_id} was published, but its result cannot be watched: {reason}"


class PublishOutcomeUnknownError(_TaskConnectionError):
    """The connection failed while the task was being published and whether it reached the queue could
    not be settled: it may be queued, and it may run. Never retry it blindly if running it twice matters.

    ``task_id`` names the task (look for its result later, or cancel it with its cancel key).
    """

    _what = "task {task_id} may or may not have been published (it may run): {reason}"


class InvalidPriorityError(OperatorError, ValueError):
    """A priority outside ``VALID_PRIORITIES`` was given."""

    def __init__(self, priority: str, valid_priorities: Sequence[str]):
        self.priority = priority
        self.valid_priorities = list(valid_priorities)
        super().__init__(f"Invalid priority: {priority}. Must be one of {self.valid_priorities}")

    def __reduce__(self) -> Any:
        return (type(self), (self.priority, self.valid_priorities))


class InvalidTaskInputError(OperatorError, ValueError):
    """The caller's task input cannot be sent (wrong shape, or a value the serializer cannot carry).

    Raised before anything is published, so a bad task never reaches the queue.
    """


class BatchProcessingError(OperatorError):
    """A batch operation failed across one or more tasks."""

    def __init__(self, failed_tasks: List[Any], total_tasks: int):
        self.failed_tasks = failed_tasks
        self.total_tasks = total_tasks
        super().__init__(f"Batch processing failed: {len(failed_tasks)}/{total_tasks} tasks failed")

    def __reduce__(self) -> Any:
        return (type(self), (self.failed_tasks, self.total_tasks))


class TaskDeadlineExceededError(OperatorError):
    """The operator skipped the task because its deadline had passed."""

    def __init__(self, task_id: str, deadline: float, current_time: float):
        self.task_id = task_id
        self.deadline = deadline
        self.current_time = current_time
        super().__init__(f"Task {task_id} exceeded deadline: {deadline} (current: {current_time})")

    def __reduce__(self) -> Any:
        return (type(self), (self.task_id, self.deadline, self.current_time))


class TaskCancelledError(OperatorError):
    """The operator skipped the task because its cancel key was set."""

    def __init__(self, task_id: str, cancel_key: str):
        self.task_id = task_id
        self.cancel_key = cancel_key
        super().__init__(f"Task {task_id} was cancelled via cancel_key: {cancel_key}")

    def __reduce__(self) -> Any:
        return (type(self), (self.task_id, self.cancel_key))


class StopException(OperatorError):
    """Kept from the seed for callers that import it."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)
