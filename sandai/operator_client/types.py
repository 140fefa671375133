"""The seed's ``sandai.operator_client.types``: result records, handles and payload shapes."""

from sandai_operator_client import AsyncSubmittedTask, AsyncTaskHandle, SubmittedTask, TaskHandle
from sandai_operator_client.types import (
    BatchTaskResult,
    ErrorInfoDict,
    HealthCheckResult,
    InputArtifactDict,
    LegacyBatchTasks,
    LegacyTaskResult,
    OperatorDescription,
    OperatorTaskResult,
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
