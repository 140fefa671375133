"""The seed's ``sandai.operator_client.exceptions``: every error (the seed's, and this client's additions)."""

from sandai_operator_client.errors import (
    BatchProcessingError,
    InvalidPriorityError,
    InvalidResultFormatError,
    InvalidTaskInputError,
    InvalidTaskStatusError,
    OperatorConnectionError,
    OperatorError,
    PublishOutcomeUnknownError,
    ResultDecodeError,
    ResultUnavailableError,
    StopException,
    TaskCancelledError,
    TaskDeadlineExceededError,
    TaskDeliveryLimitExceededError,
    TaskExecutionError,
    TaskTimeoutError,
)

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
