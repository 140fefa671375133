"""Batches: many tasks validated one by one, published in one pipeline, collected with one budget.

Functions of an :class:`~.core.OperatorCore` (its methods ``batch_submit``, ``batch_collect``,
``batch_sync_detailed``, ``iter_completed``). Rules: a task that fails validation is reported in its place
and the rest go; a task whose publish outcome is unknown keeps its id (it may run); a batch keeps no
envelope once its LPUSH is answered, and of each result only what it returns.
"""

from __future__ import annotations

from collections import abc
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Dict, List, Optional, Sequence, Tuple, Union

import anyio.lowlevel

from .._io.errors import ConnectionLost
from .._io.loop import current_time
from ..config import check_timeout
from ..errors import InvalidTaskInputError, OperatorError, PublishOutcomeUnknownError, TaskTimeoutError
from ..protocol.operator import parse_task_result
from ..types import BatchTaskResult, LegacyTaskResult
from .broker import PreparedTask
from .hub import Outcome, Watch

if TYPE_CHECKING:
    from .core import OperatorCore

__all__ = (
    "Submission",
    "TaskSpec",
    "as_submissions",
    "batch_collect",
    "batch_submit",
    "batch_sync_detailed",
    "iter_completed",
)

TaskSpec = Tuple[Any, Any]
"""``(input_artifacts, options)``."""


class Submission:
    """One task of a batch once submitted: its place in the batch, its id (None when it was never
    published), the error that kept it from the queue or may have (None when it is on it)."""

    __slots__ = ("error", "index", "task_id")

    def __init__(self, index: int, task_id: Optional[str], error: Optional[Exception]) -> None:
        self.index, self.task_id, self.error = index, task_id, error

    def __repr__(self) -> str:
        return f"Submission(index={self.index!r}, task_id={self.task_id!r}, error={self.error!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Submission):
            return NotImplemented
        return (self.index, self.task_id, self.error) == (other.index, other.task_id, other.error)

    __hash__ = None  # type: ignore[assignment]


def legacy_result(task_id: str, envelope: Any) -> LegacyTaskResult:
    """``(artifacts, results)`` of a task's operator envelope; the typed error it stands for otherwise."""
    return parse_task_result(task_id, envelope).to_legacy_tuple()


def as_submissions(items: Sequence[Any]) -> List[Submission]:
    """Handles or submitted-task records (of either facade) as :class:`Submission` s."""
    result: List[Submission] = []
    for position, item in enumerate(items):
        task_id = getattr(item, "task_id", None)
        error = getattr(item, "error", None)
        if task_id is None and error is None:
            raise InvalidTaskInputError(f"items[{position}] is neither a task handle nor a submitted task")
        result.append(Submission(getattr(item, "index", position), task_id, error))
    return result


def _check_controls(core: OperatorCore, controls: Dict[str, Any]) -> None:
    """A batch's priority and timeout, checked once for the whole batch (not as every task's error)."""
    core.check_priority(controls.get("priority"))
    if controls.get("timeout") is not None:
        check_timeout(controls["timeout"])


def _prepare_batch(
    core: OperatorCore, tasks: Sequence[TaskSpec], controls: Dict[str, Any]
) -> Tuple[List[Submission], List[PreparedTask]]:
    submissions: List[Submission] = []
    prepared: List[PreparedTask] = []
    if not isinstance(tasks, abc.Sequence) or isinstance(tasks, (str, bytes)):
        raise InvalidTaskInputError(f"tasks must be a list of (input_artifacts, options), not {type(tasks).__name__}")
    for index, spec in enumerate(tasks):
        try:
            if not isinstance(spec, abc.Sequence) or isinstance(spec, (str, bytes)) or len(spec) != 2:
                raise InvalidTaskInputError(f"tasks[{index}] must be a pair (input_artifacts, options)")
            task = core.prepare(spec[0], spec[1], **controls)
        except OperatorError as exc:
            submissions.append(Submission(index, None, exc))
            continue
        prepared.append(task)
        submissions.append(Submission(index, task.task_id, None))
    return submissions, prepared


async def batch_submit(core: OperatorCore, tasks: Sequence[TaskSpec], **controls: Any) -> List[Submission]:
    """Validate every task, publish the good ones in one pipeline; per task its id or its error."""
    _check_controls(core, controls)
    submissions, prepared = _prepare_batch(core, tasks, controls)
    if not prepared:  # nothing to publish: still a checkpoint, as every public call
        await anyio.lowlevel.checkpoint()
        return submissions
    return _merge_publish_errors(submissions, await core.publishing.settled(prepared))


def _merge_publish_errors(submissions: List[Submission], errors: List[Optional[Exception]]) -> List[Submission]:
    """``submissions`` with ``errors`` merged in: one per prepared task (a submission without an
    error), in their order; a task that failed to publish has no id."""
    publish_errors = iter(errors)
    merged: List[Submission] = []
    for submission in submissions:
        error = next(publish_errors) if submission.error is None else None
        if error is not None:  # a task whose outcome is unknown keeps its id: it may run
            task_id = submission.task_id if isinstance(error, PublishOutcomeUnknownError) else None
            submission = Submission(submission.index, task_id, error)
        merged.append(submission)
    return merged


async def batch_collect(
    core: OperatorCore, submissions: Sequence[Submission], timeout: Optional[float] = None
) -> List[BatchTaskResult]:
    """Wait for submitted tasks with one budget for the whole batch; results in input order."""
    core.check_open()
    budget = check_timeout(timeout, allow_zero=True) if timeout is not None else core.config.timeout
    ids = [s.task_id for s in submissions if s.task_id is not None and s.error is None]
    watch: Optional[Watch] = None
    lost: Optional[ConnectionLost] = None
    if ids:
        deadline = core.deadline_after(budget)
        try:
            async with core.hub.watch(
                ids,
                fetch_existing=True,
                keep=_batch_keep(core),
                deadline=deadline,
            ) as watch:
                try:
                    await core.hub.wait(watch, deadline=deadline)
                finally:  # inside the watch: the DEL can ride with its UNSUBSCRIBE
                    await core.forget_later(ids)
        except ConnectionLost as exc:
            lost = exc if current_time() < deadline else None  # None: the budget ran out first
    else:
        await anyio.lowlevel.checkpoint()
    return [_batch_result(core, s, watch, budget, lost) for s in submissions]


async def batch_sync_detailed(
    core: OperatorCore, tasks: Sequence[TaskSpec], *, timeout: Optional[float] = None, **controls: Any
) -> List[BatchTaskResult]:
    """Submit a batch and collect it: subscribe all, publish all in one pipeline, wait with one budget."""
    core.check_open()
    _check_controls(core, dict(controls, timeout=timeout))
    submissions, prepared = _prepare_batch(core, tasks, dict(controls, timeout=timeout))
    budget = timeout if timeout is not None else core.config.timeout
    watch: Optional[Watch] = None
    lost: Optional[ConnectionLost] = None
    errors: List[Optional[Exception]] = [None] * len(prepared)
    ids = [t.task_id for t in prepared]
    forgotten = False
    attempted = False  # a publish was attempted: from then on, a failure is not "nothing was sent"

    async def publish() -> None:
        nonlocal attempted
        attempted = True
        errors[:] = await core.publishing.settled(prepared)

    if prepared:
        deadline = core.deadline_after(budget)
        try:
            carried = await core.publishing.carried_lpushes(prepared, deadline)
            async with core.hub.watch(
                ids,
                while_subscribing=publish if carried is None else None,
                commands=carried,
                keep=_batch_keep(core),
                deadline=deadline,
            ) as watch:
                try:
                    if carried is not None:
                        attempted = True
                        errors[:] = await core.publishing.carried(prepared, carried, watch.replies)
                    # Rule: a batch keeps no message once its publish is answered (whoever holds the list).
                    prepared.clear()
                    published = errors.count(None)
                    if published:  # tasks that never went out have no result to wait for
                        await core.hub.wait(watch, published, deadline=deadline)
                finally:  # inside the watch: the DEL can ride with its UNSUBSCRIBE
                    forgotten = True
                    await core.forget_later([t for t, e in zip(ids, errors) if e is None])
        except ConnectionLost as exc:
            lost = exc if current_time() < deadline else None  # None: the budget ran out first
            if not attempted:  # the subscription failed before anything was sent
                errors = [core.failures.connection(exc)] * len(ids)
        finally:
            if not forgotten:
                await core.forget_later([t for t, e in zip(ids, errors) if e is None])
    else:
        await anyio.lowlevel.checkpoint()
    merged = _merge_publish_errors(submissions, errors)
    return [_batch_result(core, s, watch, budget, lost) for s in merged]


def _batch_keep(core: OperatorCore) -> Callable[[str, Outcome], Union[LegacyTaskResult, OperatorError]]:
    """What a batch's watch keeps of a task's outcome as it arrives (``ResultHub.watch``'s ``keep``):
    ``(artifacts, results)`` or the typed error, not the decoded record.

    Rule: the batch's results share their keys, one string per distinct key, not one per task (each
    record is decoded on its own). Not ``sys.intern``: interned strings are immortal on Python 3.12,
    and an operator's keys may be unbounded.
    """
    keys: Dict[Any, Any] = {}

    def keep(task_id: str, outcome: Outcome) -> Union[LegacyTaskResult, OperatorError]:
        try:
            artifacts, results = legacy_result(task_id, core.envelope(task_id, outcome))
        except OperatorError as exc:
            return exc
        return artifacts, {keys.setdefault(key, key): value for key, value in results.items()}

    return keep


def _batch_result(
    core: OperatorCore, submission: Submission, watch: Optional[Watch], budget: float, lost: Optional[ConnectionLost]
) -> BatchTaskResult:
    """One task's ``BatchTaskResult`` from what ``watch`` kept of it (``keep=_batch_keep(core)``);
    without a watch, the published task's result could not be watched (``lost`` says why), or the
    budget ran out before it could be (``lost`` None)."""
    index, task_id, submit_error = submission.index, submission.task_id, submission.error
    if task_id is None or submit_error is not None:
        return BatchTaskResult(index=index, task_id=task_id, submitted=False, error=submit_error)
    kept: Any = None
    if watch is not None:
        kept = watch.outcomes.get(task_id)
    elif lost is not None:
        kept = core.failures.unavailable(task_id, lost)
    if kept is None:
        kept = TaskTimeoutError(task_id, budget)
    if isinstance(kept, Exception):
        return BatchTaskResult(index=index, task_id=task_id, submitted=True, error=kept)
    artifacts, results = kept
    return BatchTaskResult(index=index, task_id=task_id, submitted=True, artifacts=artifacts, results=results)


async def iter_completed(
    core: OperatorCore, submissions: Sequence[Submission], timeout: Optional[float] = None
) -> AsyncIterator[BatchTaskResult]:
    """Results in completion order, one budget for all (``batch_collect`` semantics).

    Tasks that were never submitted come first; when the budget runs out the rest come as
    ``TaskTimeoutError`` in input order. Close the iterator (``aclose``) when leaving early.
    """
    core.check_open()
    budget = check_timeout(timeout, allow_zero=True) if timeout is not None else core.config.timeout
    waiting = [s for s in submissions if s.task_id is not None and s.error is None]
    for s in submissions:
        if s.task_id is None or s.error is not None:
            yield _batch_result(core, s, None, budget, None)
    if not waiting:
        await anyio.lowlevel.checkpoint()
        return
    by_id = {s.task_id: s for s in waiting if s.task_id is not None}
    deadline = core.deadline_after(budget)
    yielded: set[Optional[str]] = set()
    try:
        async with core.hub.watch(
            list(by_id),
            fetch_existing=True,
            in_order=True,
            keep=_batch_keep(core),
            deadline=deadline,
        ) as watch:
            # no cancel scope may span a yield (the consumer may resume us from another task): each
            # wait is bounded by the one deadline of the batch
            assert watch.arrived is not None
            while len(watch.arrived) or len(watch.outcomes) < len(watch.ids):
                if not watch.arrived:
                    await core.hub.wait(watch, len(watch.outcomes) + 1, deadline=deadline)
                    if not watch.arrived:
                        break  # the budget is spent
                task_id = watch.arrived.popleft()
                await core.forget_later([task_id])
                yielded.add(task_id)
                yield _batch_result(core, by_id[task_id], watch, budget, None)
            for s in waiting:
                if s.task_id not in watch.outcomes:
                    yielded.add(s.task_id)
                    yield _batch_result(core, s, watch, budget, None)
    except ConnectionLost as exc:
        for s in waiting:
            if s.task_id not in yielded:
                yield _batch_result(core, s, None, budget, exc)
