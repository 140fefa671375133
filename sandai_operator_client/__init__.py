"""Send tasks to Sandai operators over the Celery v2 wire protocol, without Celery.

The public API of the seed client ``sandai-operator-client`` 0.4.6, name for name, on one anyio core:
``create_client``/``OperatorClient`` (blocking) and ``create_async_client``/``AsyncOperatorClient``
(asyncio and trio). ``from sandai.operator_client import ...`` works too.
"""

from ._async import AsyncOperatorClient, AsyncTaskHandle, create_async_client
from ._sync import OperatorClient, TaskHandle, TaskState, create_client
from .config import (
    VALID_PRIORITIES,
    CeleryConfig,
    ClientConfig,
    env_bool,
    get_celery_config,
    get_default_celery_config,
    resolve_client_config,
)
from .errors import (
    BatchProcessingError,
    InvalidPriorityError,
    InvalidResultFormatError,
    InvalidTaskInputError,
    InvalidTaskStatusError,
    OperatorConnectionError,
    OperatorError,
    ResultDecodeError,
    StopException,
    TaskCancelledError,
    TaskDeadlineExceededError,
    TaskDeliveryLimitExceededError,
    TaskExecutionError,
    TaskTimeoutError,
)
from .types import (
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

__version__ = "0.5.0"

__all__ = (
    "VALID_PRIORITIES",
    "AsyncOperatorClient",
    "AsyncSubmittedTask",
    "AsyncTaskHandle",
    "BatchProcessingError",
    "BatchTaskResult",
    "CeleryConfig",
    "ClientConfig",
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
    "ResultDecodeError",
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
