"""AsyncOperatorClient: the async facade over the core (asyncio and trio)."""

from __future__ import annotations

from types import TracebackType
from typing import Any, AsyncIterator, Dict, Generator, List, Optional, Sequence, Type, Union

from ._core.core import OperatorCore, Submission, as_submissions
from ._settings import ClientSettings
from .errors import OperatorError
from .types import AsyncSubmittedTask, BatchTaskResult, HealthCheckResult, LegacyBatchTasks, LegacyTaskResult

__all__ = ("AsyncOperatorClient", "AsyncTaskHandle", "create_async_client")


class AsyncTaskHandle:
    """A submitted task. ``await handle`` is ``await handle.get()``."""

    __slots__ = ("_core", "id")

    def __init__(self, core: OperatorCore, task_id: str) -> None:
        self._core = core
        self.id = task_id

    @property
    def task_id(self) -> str:
        """The task id (also the Celery ``correlation_id`` and result key suffix)."""
        return self.id

    async def get(self, timeout: Optional[float] = None, propagate: bool = True) -> Any:
        """Wait for the operator's raw result envelope (None waits without limit).

        Raises:
            TaskTimeoutError: no result within ``timeout``.
            TaskExecutionError: a FAILURE or REVOKED record.
            ResultDecodeError: a record that cannot be decoded.
            OperatorConnectionError: the result backend cannot be reached.
        With ``propagate=False`` a task failure is returned instead of raised, as Celery does.
        """
        try:
            return await self._core.get_result(self.id, timeout)
        except OperatorError as exc:
            if propagate:
                raise
            return exc

    def __await__(self) -> Generator[Any, None, Any]:
        return self.get().__await__()

    async def ready(self) -> bool:
        """True once the task reached a final state."""
        return await self._core.ready(self.id)

    async def state(self) -> str:
        """The Celery state: PENDING, SUCCESS, FAILURE, REVOKED, ..."""
        return await self._core.state(self.id)

    async def forget(self) -> None:
        """Delete the result record."""
        await self._core.forget(self.id)

    def __repr__(self) -> str:
        return f"<AsyncTaskHandle {self.id}>"


class AsyncOperatorClient(ClientSettings):
    """Async client for one operator (``name``/``version``); use ``async with`` or call ``aclose()``."""

    def _open(self) -> None:
        self._core = OperatorCore(self.config)

    async def __aenter__(self) -> AsyncOperatorClient:
        return self

    async def __aexit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close connections; idempotent."""
        await self._core.aclose()

    def handle(self, task_id: str) -> AsyncTaskHandle:
        """A handle for a task submitted earlier (by this or another process), by its id."""
        return AsyncTaskHandle(self._core, task_id)

    async def desc(self) -> Dict[str, Any]:
        """The operator's description ``{doc, options_schema, results_schema}``, cached per client."""
        return await self._core.desc()

    async def async_call(
        self,
        input_artifacts: List[Dict[str, Any]],
        options: Dict[str, Any],
        priority: Optional[str] = None,
        timeout: Optional[int] = None,
        cancel_key: Optional[str] = None,
        persistent_output: bool = False,
    ) -> AsyncTaskHandle:
        """Submit one task and return its handle without waiting."""
        task_id = await self._core.submit(
            input_artifacts, options, priority=priority, timeout=timeout, cancel_key=cancel_key,
            persistent_output=persistent_output,
        )
        return self.handle(task_id)

    async def sync(
        self,
        input_artifacts: List[Dict[str, Any]],
        options: Dict[str, Any],
        priority: Optional[str] = None,
        *,
        timeout: Optional[int] = None,
        cancel_key: Optional[str] = None,
        persistent_output: bool = False,
    ) -> LegacyTaskResult:
        """Submit one task and wait: ``(artifacts, results)``.

        Raises:
            TaskTimeoutError, TaskExecutionError, TaskDeadlineExceededError, TaskCancelledError,
            InvalidTaskStatusError, InvalidResultFormatError, InvalidPriorityError, InvalidTaskInputError,
            OperatorConnectionError.
        """
        return await self._core.sync(
            input_artifacts, options, priority=priority, timeout=timeout, cancel_key=cancel_key,
            persistent_output=persistent_output,
        )

    def _submitted(self, submissions: List[Submission]) -> List[AsyncSubmittedTask]:
        return [
            AsyncSubmittedTask(index=i, handle=None if t is None else self.handle(t), error=e)
            for i, t, e in submissions
        ]

    async def batch_submit(
        self, tasks: LegacyBatchTasks, *, priority: Optional[str] = None, timeout: Optional[int] = None,
        cancel_key: Optional[str] = None, persistent_output: bool = False,
    ) -> List[AsyncSubmittedTask]:
        """Submit many tasks in one pipeline; per task its handle or the error that kept it back."""
        return self._submitted(await self._core.batch_submit(
            tasks, priority=priority, timeout=timeout, cancel_key=cancel_key, persistent_output=persistent_output,
        ))

    async def batch_async(
        self, tasks: LegacyBatchTasks, *, priority: Optional[str] = None, timeout: Optional[int] = None,
        cancel_key: Optional[str] = None, persistent_output: bool = False,
    ) -> List[Optional[AsyncTaskHandle]]:
        """Legacy: like ``batch_submit`` but a handle or None per task."""
        submitted = await self.batch_submit(
            tasks, priority=priority, timeout=timeout, cancel_key=cancel_key, persistent_output=persistent_output,
        )
        return [s.handle for s in submitted]

    async def batch_collect(
        self, submissions: List[AsyncSubmittedTask], *, timeout: Optional[int] = None
    ) -> List[BatchTaskResult]:
        """Wait for a submitted batch; ``timeout`` is one budget for the whole batch. Input order."""
        return await self._core.batch_collect([(s.index, s.task_id, s.error) for s in submissions], timeout)

    async def batch_sync_detailed(
        self, tasks: LegacyBatchTasks, *, priority: Optional[str] = None, timeout: Optional[int] = None,
        cancel_key: Optional[str] = None, persistent_output: bool = False,
    ) -> List[BatchTaskResult]:
        """Submit and collect a batch: one ``BatchTaskResult`` per task, in input order."""
        return await self._core.batch_sync_detailed(
            tasks, priority=priority, timeout=timeout, cancel_key=cancel_key, persistent_output=persistent_output,
        )

    async def batch_sync(
        self, tasks: LegacyBatchTasks, *, priority: Optional[str] = None, timeout: Optional[int] = None,
        cancel_key: Optional[str] = None, persistent_output: bool = False,
    ) -> List[LegacyTaskResult]:
        """Legacy: ``(artifacts, results)`` per task, ``([], {})`` for a failed one."""
        results = await self.batch_sync_detailed(
            tasks, priority=priority, timeout=timeout, cancel_key=cancel_key, persistent_output=persistent_output,
        )
        return [r.to_legacy_tuple() for r in results]


    async def cancel(self, cancel_key: str, ttl: Optional[float] = None) -> None:
        """Cancel every not-yet-started task that carries ``cancel_key`` (operators skip it).

        Sets the key on the result backend's Redis for ``ttl`` seconds (default: the client timeout).
        """
        await self._core.cancel(cancel_key, ttl)

    def as_completed(
        self, tasks: Sequence[Union[AsyncTaskHandle, AsyncSubmittedTask]], *, timeout: Optional[float] = None
    ) -> AsyncIterator[BatchTaskResult]:
        """``async for`` the results as they complete; ``timeout`` is one budget for all.

        Results carry their input ``index``; unfinished tasks come last with ``TaskTimeoutError``.
        Leaving early: wrap in ``contextlib.aclosing`` so the subscriptions end at once.
        """
        return self._core.iter_completed(as_submissions(tasks), timeout)

    async def batch_iter(
        self, tasks: LegacyBatchTasks, *, priority: Optional[str] = None, timeout: Optional[float] = None,
        cancel_key: Optional[str] = None, persistent_output: bool = False,
    ) -> AsyncIterator[BatchTaskResult]:
        """Submit a batch and yield its results in completion order (``as_completed`` of ``batch_submit``)."""
        submissions = await self._core.batch_submit(
            tasks, priority=priority, timeout=timeout, cancel_key=cancel_key, persistent_output=persistent_output,
        )
        results = self._core.iter_completed(submissions, timeout)
        try:
            async for result in results:
                yield result
        finally:
            await results.aclose()  # type: ignore[attr-defined]

    async def queue_depth(self) -> Dict[str, int]:
        """Messages waiting per priority queue."""
        return await self._core.queue_depth()

    async def probe(self, timeout: int = 10) -> HealthCheckResult:
        """Submit a test task and report what worked."""
        return await self._core.probe(timeout)

    async def ping(self, timeout: int = 10) -> bool:
        """True when the submit path works (``probe().submit_ok``)."""
        return (await self.probe(timeout=timeout)).submit_ok



def create_async_client(operator_name: str, operator_version: str, **kwargs: Any) -> AsyncOperatorClient:
    """``AsyncOperatorClient(operator_name, operator_version, **kwargs)``."""
    return AsyncOperatorClient(operator_name, operator_version, **kwargs)
