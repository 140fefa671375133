"""Send tasks to Sandai operators over the Celery v2 wire protocol, without Celery.

The public API of the seed client ``sandai-operator-client`` 0.4.6, name for name, on one anyio core:
``create_client``/``OperatorClient`` (blocking) and ``create_async_client``/``AsyncOperatorClient``
(asyncio and trio). ``from sandai.operator_client import ...`` works too.

Importing the package loads only the errors; every other public name is imported on first use (PEP 562),
so a program that imports the client but does not call it yet (a CLI, a worker's module top) does not pay
for the core, anyio and the serializers at start-up.
"""

from .errors import (
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

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing the package must not load typing

if TYPE_CHECKING:
    from ._async import AsyncOperatorClient, AsyncSubmittedTask, AsyncTaskHandle, create_async_client
    from ._sync import OperatorClient, SubmittedTask, TaskHandle, TaskState, create_client
    from .config import (
        VALID_PRIORITIES,
        CeleryConfig,
        ClientConfig,
        ConnectionPolicy,
        Priority,
        env_bool,
        get_celery_config,
        get_default_celery_config,
        resolve_client_config,
    )
    from .types import (
        BatchTaskResult,
        ClientStatistics,
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

_LAZY = {
    **dict.fromkeys(("AsyncOperatorClient", "AsyncSubmittedTask", "AsyncTaskHandle", "create_async_client"), "_async"),
    **dict.fromkeys(("OperatorClient", "SubmittedTask", "TaskHandle", "TaskState", "create_client"), "_sync"),
    **dict.fromkeys(
        (
            "VALID_PRIORITIES",
            "CeleryConfig",
            "ClientConfig",
            "ConnectionPolicy",
            "Priority",
            "env_bool",
            "get_celery_config",
            "get_default_celery_config",
            "resolve_client_config",
        ),
        "config",
    ),
    **dict.fromkeys(
        (
            "BatchTaskResult",
            "ClientStatistics",
            "ErrorInfoDict",
            "HealthCheckResult",
            "InputArtifactDict",
            "LegacyBatchTasks",
            "LegacyTaskResult",
            "OperatorDescription",
            "OperatorTaskResult",
            "TaskMetaDict",
            "TaskPayloadDict",
        ),
        "types",
    ),
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list:  # type: ignore[type-arg]
    return sorted(set(globals()) | set(_LAZY))


__version__ = "1.0.0a1"  # the one place the version is written: the build reads it here

__all__ = (
    "VALID_PRIORITIES",
    "AsyncOperatorClient",
    "AsyncSubmittedTask",
    "AsyncTaskHandle",
    "BatchProcessingError",
    "BatchTaskResult",
    "CeleryConfig",
    "ClientConfig",
    "ClientStatistics",
    "ConnectionPolicy",
    "ErrorInfoDict",
    "HealthCheckResult",
    "InputArtifactDict",
    "InvalidPriorityError",
    "InvalidResultFormatError",
    "InvalidTaskInputError",
    "InvalidTaskStatusError",
    "LegacyBatchTasks",
    "LegacyTaskResult",
    "OperatorClient",
    "OperatorConnectionError",
    "OperatorDescription",
    "OperatorError",
    "OperatorTaskResult",
    "Priority",
    "PublishOutcomeUnknownError",
    "ResultDecodeError",
    "ResultUnavailableError",
    "StopException",
    "SubmittedTask",
    "TaskCancelledError",
    "TaskDeadlineExceededError",
    "TaskDeliveryLimitExceededError",
    "TaskExecutionError",
    "TaskHandle",
    "TaskMetaDict",
    "TaskPayloadDict",
    "TaskState",
    "TaskTimeoutError",
    "__version__",
    "create_async_client",
    "create_client",
    "env_bool",
    "get_celery_config",
    "get_default_celery_config",
    "resolve_client_config",
)
