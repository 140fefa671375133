"""The seed's ``sandai.operator_client.types``: result records, handles and payload shapes."""

from sandai_operator_client import AsyncTaskHandle, TaskHandle
from sandai_operator_client.types import (
    AsyncSubmittedTask,
    BatchTaskResult,
    ErrorInfoDict,
    HealthCheckResult,
    InputArtifactDict,
    LegacyBatchTasks,
    LegacyTaskResult,
    OperatorDescription,
    OperatorTaskResult,
    SubmittedTask,
    TaskMetaDict,
    TaskPayloadDict,
)

__all__ = (
    "AsyncSubmittedTask",
    "AsyncTaskHandle",
    "BatchTaskResult",
    "ErrorInfoDict",
    "HealthCheckResult",
    "InputArtifactDict",
    "LegacyBatchTasks",
    "LegacyTaskResult",
    "OperatorDescription",
    "OperatorTaskResult",
    "SubmittedTask",
    "TaskHandle",
    "TaskMetaDict",
    "TaskPayloadDict",
)
