"""OperatorClient: the blocking facade. Each method drives the async core once (``_portal.py`` says where)."""

from __future__ import annotations

import os
import weakref
from functools import cached_property
from types import TracebackType
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    Type,
    TypeVar,
    Union,
)

from ._blocking_iterator import BlockingIterator
from ._core.batches import Submission, as_submissions
from ._core.core import OperatorCore
from ._portal import InlineLoop, LoopThread, loop_thread
from ._settings import ClientSettings
from ._sync_handle import SubmittedTask, TaskHandle, TaskState
from .config import ConnectionPolicy, Priority
from .types import (
    BatchTaskResult,
    ClientStatistics,
    HealthCheckResult,
    LegacyBatchTasks,
    LegacyTaskResult,
)

__all__ = ("OperatorClient", "SubmittedTask", "TaskHandle", "TaskState", "create_client")

T = TypeVar("T")


class OperatorClient(ClientSettings):
    """Blocking client for one operator; ``close()`` it (or use ``with``) when done.

    Constructed like :func:`create_client` (which documents every argument), the operator's name and
    version positional. Usable from many threads at once, inside a running asyncio or trio task (it blocks
    that task), and under gevent.
    """

    def _open(self) -> None:
        self._pid = os.getpid()
        self._inline = InlineLoop()
        self._core = OperatorCore(self.config)  # driven inline, in the calling thread
        self._loop: Optional[LoopThread] = None
        self._loop_core: Optional[OperatorCore] = None  # driven in the loop thread, for concurrent threads
        self._closed = False
        weakref.finalize(self, self._inline.close)

    def _shared_loop(self) -> tuple[LoopThread, OperatorCore]:
        if self._loop is None or self._loop_core is None:
            self._loop = loop_thread()
            self._loop_core = self._loop.run_sync(OperatorCore, self.config)  # loop-bound: built there
        return self._loop, self._loop_core

    def _run(self, method: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self._pid != os.getpid():  # forked: the parent's loops and sockets are not ours
            self._open()
        if self._closed:  # the closed core raises the typed "closed" error
            return self._inline.run(method, self._core, *args)
        done, result = self._inline.try_run(method, self._core, *args)
        if done:
            return result  # type: ignore[return-value]
        loop, core = self._shared_loop()
        return loop.run(method, core, *args)

    def _call(self, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        return self._run(lambda core: method(core, *args, **kwargs))

    def __enter__(self) -> OperatorClient:
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close connections; idempotent."""
        if self._pid != os.getpid():
            return  # a forked child never closes what the parent still uses
        self._closed = True
        # A call another thread is in on the inline loop would hold it until its own timeout: closing
        # the core beside it fails that call at once with the typed "client is closed" error.
        self._inline.start_beside(OperatorCore.aclose, self._core)
        self._inline.run(OperatorCore.aclose, self._core)
        if self._loop is not None and self._loop_core is not None:
            self._loop.run(OperatorCore.aclose, self._loop_core)
        self._log_close()

    def statistics(self) -> ClientStatistics:
        """Connections, watched channels, waiting calls, queued commands, reconnects and settled writes
        now (no I/O): see :class:`~sandai_operator_client.ClientStatistics`. Read from the client's
        cores as they are: a snapshot, not a transaction."""
        figures = self._core.statistics()
        if self._loop_core is not None:
            figures = figures + self._loop_core.statistics()
        return figures

    def handle(self, task_id: str) -> TaskHandle:
        """A handle for a task submitted earlier (by this or another process), by its id."""
        return TaskHandle(self, task_id)

    @cached_property
    def desc(self) -> Dict[str, Any]:
        """The operator's description ``{doc, options_schema, results_schema}`` (cached)."""
        return self._run(OperatorCore.desc)

    def async_call(
        self,
        input_artifacts: List[Dict[str, Any]],
        options: Dict[str, Any],
        priority: Optional[Priority] = None,
        timeout: Optional[float] = None,
        cancel_key: Optional[str] = None,
        persistent_output: bool = False,
    ) -> TaskHandle:
        """Submit one task; its handle."""
        return self.handle(
            self._call(
                OperatorCore.submit,
                input_artifacts,
                options,
                priority=priority,
                timeout=timeout,
                cancel_key=cancel_key,
                persistent_output=persistent_output,
            )
        )

    def sync(
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
        return self._call(
            OperatorCore.sync,
            input_artifacts,
            options,
            priority=priority,
            timeout=timeout,
            cancel_key=cancel_key,
            persistent_output=persistent_output,
        )

    def _submitted(self, submissions: List[Submission]) -> List[SubmittedTask]:
        return [
            SubmittedTask(
                index=s.index, async_result=None if s.task_id is None else self.handle(s.task_id), error=s.error
            )
            for s in submissions
        ]

    def batch_submit(
        self,
        tasks: LegacyBatchTasks,
        *,
        priority: Optional[Priority] = None,
        timeout: Optional[float] = None,
        cancel_key: Optional[str] = None,
        persistent_output: bool = False,
    ) -> List[SubmittedTask]:
        """Submit many tasks in one pipeline; per task its handle or the error that kept it back."""
        return self._submitted(
            self._call(
                OperatorCore.batch_submit,
                tasks,
                priority=priority,
                timeout=timeout,
                cancel_key=cancel_key,
                persistent_output=persistent_output,
            )
        )

    def batch_async(
        self,
        tasks: LegacyBatchTasks,
        *,
        priority: Optional[Priority] = None,
        timeout: Optional[float] = None,
        cancel_key: Optional[str] = None,
        persistent_output: bool = False,
    ) -> List[Optional[TaskHandle]]:
        """Legacy: like ``batch_submit`` but a handle or None per task."""
        submitted = self.batch_submit(
            tasks,
            priority=priority,
            timeout=timeout,
            cancel_key=cancel_key,
            persistent_output=persistent_output,
        )
        return [s.async_result for s in submitted]

    def batch_collect(
        self, submissions: List[SubmittedTask], *, timeout: Optional[float] = None
    ) -> List[BatchTaskResult]:
        """Wait for a submitted batch; ``timeout`` is one budget for the whole batch. Input order."""
        return self._call(
            OperatorCore.batch_collect, [Submission(s.index, s.task_id, s.error) for s in submissions], timeout
        )

    def batch_sync_detailed(
        self,
        tasks: LegacyBatchTasks,
        *,
        priority: Optional[Priority] = None,
        timeout: Optional[float] = None,
        cancel_key: Optional[str] = None,
        persistent_output: bool = False,
    ) -> List[BatchTaskResult]:
        """Submit and collect a batch: one ``BatchTaskResult`` per task, in input order."""
        return self._call(
            OperatorCore.batch_sync_detailed,
            tasks,
            priority=priority,
            timeout=timeout,
            cancel_key=cancel_key,
            persistent_output=persistent_output,
        )

    def batch_sync(
        self,
        tasks: LegacyBatchTasks,
        *,
        priority: Optional[Priority] = None,
        timeout: Optional[float] = None,
        cancel_key: Optional[str] = None,
        persistent_output: bool = False,
    ) -> List[LegacyTaskResult]:
        """Legacy: ``(artifacts, results)`` per task, ``([], {})`` for a failed one."""
        results = self.batch_sync_detailed(
            tasks,
            priority=priority,
            timeout=timeout,
            cancel_key=cancel_key,
            persistent_output=persistent_output,
        )
        return [r.to_legacy_tuple() for r in results]

    def cancel(self, cancel_key: str, ttl: Optional[float] = None) -> None:
        """Cancel every not-yet-started task that carries ``cancel_key`` (operators skip it).

        Sets the key on the result backend's Redis for ``ttl`` seconds (default: the client timeout).
        """
        self._run(OperatorCore.cancel, cancel_key, ttl)

    def as_completed(
        self, tasks: Sequence[Union[TaskHandle, SubmittedTask]], *, timeout: Optional[float] = None
    ) -> Iterator[BatchTaskResult]:
        """Iterate results as they complete; ``timeout`` is one budget for all (``batch_collect`` semantics).

        Results carry their input ``index``; unfinished tasks come last with ``TaskTimeoutError``.
        """
        return self._iterate(as_submissions(tasks), timeout)

    def batch_iter(
        self,
        tasks: LegacyBatchTasks,
        *,
        priority: Optional[Priority] = None,
        timeout: Optional[float] = None,
        cancel_key: Optional[str] = None,
        persistent_output: bool = False,
    ) -> Iterator[BatchTaskResult]:
        """Submit a batch and iterate its results in completion order."""
        submissions = self._call(
            OperatorCore.batch_submit,
            tasks,
            priority=priority,
            timeout=timeout,
            cancel_key=cancel_key,
            persistent_output=persistent_output,
        )
        return self._iterate(submissions, timeout)

    def _iterate(self, submissions: List[Submission], timeout: Optional[float]) -> Iterator[BatchTaskResult]:
        # The async iterator keeps its subscription between items, so all its steps run on one loop:
        # the shared loop thread (a step per item).
        loop, core = self._shared_loop()
        return BlockingIterator(loop, core.iter_completed(submissions, timeout))

    def queue_depth(self) -> Dict[str, int]:
        """Messages waiting per priority queue."""
        return self._run(OperatorCore.queue_depth)

    def probe(self, timeout: float = 10) -> HealthCheckResult:
        """Submit a test task and report what worked."""
        return self._run(OperatorCore.probe, timeout)

    def ping(self, timeout: float = 10) -> bool:
        """True when the submit path works (``probe().submit_ok``)."""
        return self.probe(timeout=timeout).submit_ok


def create_client(
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
) -> OperatorClient:
    """A :class:`OperatorClient` for the operator ``operator_name`` at ``operator_version`` (its queues are
    ``<priority>.<operator_name>.<operator_version>``).

    Args:
        broker_url: where tasks go (``redis://``, ``rediss://``, ``unix://``, ``amqp://``); default
            ``SANDAI_OPERATOR_CELERY_BROKER_URL``, else ``redis://localhost:6379/0``.
        result_backend: the Redis operators write results to; default
            ``SANDAI_OPERATOR_CELERY_RESULT_BACKEND``, else the broker.
        timeout: seconds; each task's deadline at the operator and the default wait for its result.
        debug: kept from the seed (no effect on the wire).
        priority: the default priority of tasks.
        cancel_key: the default cancel key of tasks (see ``cancel()``).
        auto_forget_result: delete result keys once read (default ``SANDAI_OPERATOR_AUTO_FORGET_RESULT``,
            else on).
        connection: a :class:`~sandai_operator_client.ConnectionPolicy` (timeouts, idle checks, keepalive).
        task_serializer: ``"msgpack"`` or ``"json"`` (operators of SDK 0.4.0 and older take json only);
            default ``SANDAI_OPERATOR_CELERY_TASK_SERIALIZER``, else msgpack.
        result_serializer: ``"json"`` or ``"msgpack"``; default ``SANDAI_OPERATOR_CELERY_RESULT_SERIALIZER``,
            else json (records are read whatever their serializer).

    Raises:
        InvalidPriorityError: ``priority`` is not one of ``VALID_PRIORITIES``.
        ValueError: the result backend is not Redis, or a serializer is neither json nor msgpack.
    """
    return OperatorClient(
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
