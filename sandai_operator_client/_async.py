"""AsyncOperatorClient: the async facade over the core (asyncio and trio)."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, AsyncIterator, Dict, Generator, List, Optional, Sequence, Type, Union

import anyio.lowlevel

from ._core.batches import Submission, as_submissions
from ._core.core import OperatorCore
from ._gone import gone
from ._settings import ClientSettings
from .config import ConnectionPolicy, Priority
from .errors import OperatorError
from .types import (
    BatchTaskResult,
    ClientStatistics,
    HealthCheckResult,
    LegacyBatchTasks,
    LegacyTaskResult,
)

__all__ = ("AsyncSubmittedTask", "AsyncOperatorClient", "AsyncTaskHandle", "create_async_client")


class AsyncTaskHandle:
    """A submitted task. ``await handle`` is ``await handle.get()``. What needs Celery (``revoke``,
    ``result``, ``info``, ``traceback``, ``date_done``) raises ``AttributeError`` naming what to use instead."""

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

        With ``propagate=False`` a task failure is returned instead of raised, as Celery does.

        Raises:
            TaskTimeoutError: no result within ``timeout``.
            TaskExecutionError: a FAILURE or REVOKED record.
            ResultDecodeError: a record that cannot be decoded.
            OperatorConnectionError: the result backend cannot be reached.
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

    async def wait(self, timeout: Optional[float] = None, propagate: bool = True) -> Any:
        """Celery's old name for :meth:`get`."""
        return await self.get(timeout, propagate)

    revoke = gone("revoke", "tag tasks with a cancel_key and call client.cancel(cancel_key): operators skip them")
    result = gone("result", "use get(timeout=0), which returns the result if it is there (else TaskTimeoutError)")
    info = gone("info", "use get(timeout=0), which returns the result if it is there (else TaskTimeoutError)")
    traceback = gone("traceback", "a failed task raises its typed error from get(); operators send no traceback")
    date_done = gone("date_done", "not kept: the result record's date is not read")

    def __repr__(self) -> str:
        return f"<AsyncTaskHandle {self.id}>"


@dataclass(frozen=True)
class AsyncSubmittedTask:
    """One task of an async ``batch_submit``."""

    index: int
    handle: Optional[AsyncTaskHandle] = None
    error: Optional[Exception] = None

    @property
    def submitted(self) -> bool:
        """True when the task was published."""
        return self.handle is not None and self.error is None

    @property
    def task_id(self) -> Optional[str]:
        """The task id, when submitted."""
        return None if self.handle is None else self.handle.task_id


class AsyncOperatorClient(ClientSettings):
    """Async client for one operator, under asyncio or trio; use ``async with`` or call ``aclose()``.

    Constructed like :func:`create_async_client` (which documents every argument), the operator's name and
    version positional.
    """

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
        self._log_close()
        await anyio.lowlevel.checkpoint()  # a checkpoint even when the client was closed already

    def statistics(self) -> ClientStatistics:
        """Connections, watched channels, waiting calls, queued commands, reconnects and settled writes
        now (no I/O): see :class:`~sandai_operator_client.ClientStatistics`."""
        return self._core.statistics()

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
        priority: Optional[Priority] = None,
        timeout: Optional[float] = None,
        cancel_key: Optional[str] = None,
        persistent_output: bool = False,
    ) -> AsyncTaskHandle:
        """Submit one task and return its handle without waiting."""
        task_id = await self._core.submit(
            input_artifacts,
            options,
            priority=priority,
            timeout=timeout,
            cancel_key=cancel_key,
            persistent_output=persistent_output,
        )
        return self.handle(task_id)

    async def sync(
        self,
        input_artifacts: List[Dict[str, Any]],
        options: Dict[str, Any],
        priority: Optional[Priority] = None,
        *,
        timeout: Optional[float] = None,
        cancel_key: Optional[str] = None,
        persistent_output: bool = False,
    ) -> LegacyTaskResult:
        """Submit one task and wait: ``(artifacts, results)``.

        Raises:
            TaskExecutionError: the operator reported an error (``TaskDeadlineExceededError`` and
                ``TaskCancelledError`` are kinds of it).
            TaskTimeoutError: no result within ``timeout``.
            InvalidTaskInputError: bad input, before anything is sent (also ``InvalidPriorityError``).
            InvalidResultFormatError: a result that is not an operator envelope (``InvalidTaskStatusError``,
                ``ResultDecodeError`` say more).
            OperatorConnectionError: the broker or backend failed; ``PublishOutcomeUnknownError`` and
                ``ResultUnavailableError`` say whether the task was published.
        """
        return await self._core.sync(
            input_artifacts,
            options,
            priority=priority,
            timeout=timeout,
            cancel_key=cancel_key,
            persistent_output=persistent_output,
        )

    def _submitted(self, submissions: List[Submission]) -> List[AsyncSubmittedTask]:
        return [
            AsyncSubmittedTask(
                index=s.index, handle=None if s.task_id is None else self.handle(s.task_id), error=s.error
            )
            for s in submissions
        ]

    async def batch_submit(
        self,
        tasks: LegacyBatchTasks,
        *,
        priority: Optional[Priority] = None,
        timeout: Optional[float] = None,
        cancel_key: Optional[str] = None,
        persistent_output: bool = False,
    ) -> List[AsyncSubmittedTask]:
        """Submit many tasks in one pipeline; per task its handle or the error that kept it back."""
        return self._submitted(
            await self._core.batch_submit(
                tasks,
                priority=priority,
                timeout=timeout,
                cancel_key=cancel_key,
                persistent_output=persistent_output,
            )
        )

    async def batch_async(
        self,
        tasks: LegacyBatchTasks,
        *,
        priority: Optional[Priority] = None,
        timeout: Optional[float] = None,
        cancel_key: Optional[str] = None,
        persistent_output: bool = False,
    ) -> List[Optional[AsyncTaskHandle]]:
        """Legacy: like ``batch_submit`` but a handle or None per task."""
        submitted = await self.batch_submit(
            tasks,
            priority=priority,
            timeout=timeout,
            cancel_key=cancel_key,
            persistent_output=persistent_output,
        )
        return [s.handle for s in submitted]

    async def batch_collect(
        self, submissions: List[AsyncSubmittedTask], *, timeout: Optional[float] = None
    ) -> List[BatchTaskResult]:
        """Wait for a submitted batch; ``timeout`` is one budget for the whole batch. Input order."""
        return await self._core.batch_collect([Submission(s.index, s.task_id, s.error) for s in submissions], timeout)

    async def batch_sync_detailed(
        self,
        tasks: LegacyBatchTasks,
        *,
        priority: Optional[Priority] = None,
        timeout: Optional[float] = None,
        cancel_key: Optional[str] = None,
        persistent_output: bool = False,
    ) -> List[BatchTaskResult]:
        """Submit and collect a batch: one ``BatchTaskResult`` per task, in input order."""
        return await self._core.batch_sync_detailed(
            tasks,
            priority=priority,
            timeout=timeout,
            cancel_key=cancel_key,
            persistent_output=persistent_output,
        )

    async def batch_sync(
        self,
        tasks: LegacyBatchTasks,
        *,
        priority: Optional[Priority] = None,
        timeout: Optional[float] = None,
        cancel_key: Optional[str] = None,
        persistent_output: bool = False,
    ) -> List[LegacyTaskResult]:
        """Legacy: ``(artifacts, results)`` per task, ``([], {})`` for a failed one."""
        results = await self.batch_sync_detailed(
            tasks,
            priority=priority,
            timeout=timeout,
            cancel_key=cancel_key,
            persistent_output=persistent_output,
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
        self,
        tasks: LegacyBatchTasks,
        *,
        priority: Optional[Priority] = None,
        timeout: Optional[float] = None,
        cancel_key: Optional[str] = None,
        persistent_output: bool = False,
    ) -> AsyncIterator[BatchTaskResult]:
        """Submit a batch and yield its results in completion order (``as_completed`` of ``batch_submit``)."""
        submissions = await self._core.batch_submit(
            tasks,
            priority=priority,
            timeout=timeout,
            cancel_key=cancel_key,
            persistent_output=persistent_output,
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

    async def probe(self, timeout: float = 10) -> HealthCheckResult:
        """Submit a test task and report what worked."""
        return await self._core.probe(timeout)

    async def ping(self, timeout: float = 10) -> bool:
        """True when the submit path works (``probe().submit_ok``)."""
        return (await self.probe(timeout=timeout)).submit_ok


def create_async_client(
    operator_name: str,
    operator_version: str,
    *,
    broker_url: Optional[str] = None,
    result_backend: Optional[str] = None,
    timeout: float = 28800,
    debug: bool = False,
    priority: Priority = "normal",
    cancel_key: Optional[str] = None,
    auto_forget_result: Optional[bool] = None,
    connection: Optional[ConnectionPolicy] = None,
    task_serializer: Optional[str] = None,
    result_serializer: Optional[str] = None,
) -> AsyncOperatorClient:
    """An :class:`AsyncOperatorClient` for the operator ``operator_name`` at ``operator_version``; the
    arguments are :func:`~sandai_operator_client.create_client`'s, documented there."""
    return AsyncOperatorClient(
        operator_name,
        operator_version,
        broker_url=broker_url,
        result_backend=result_backend,
        timeout=timeout,
        debug=debug,
        priority=priority,
        cancel_key=cancel_key,
        auto_forget_result=auto_forget_result,
        connection=connection,
        task_serializer=task_serializer,
        result_serializer=result_serializer,
    )
