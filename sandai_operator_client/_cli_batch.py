"""The ``batch`` command: read and check every line first, then submit, stream results, summarise.

Rules: nothing is sent unless every line is a valid task (a misspelled key is an error, not an empty
task); every task carries a cancel key, so Ctrl-C can have operators skip what has not started; a
batch that every task failed the same way (a dead broker) is one line, not one per task.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional, Sequence, TextIO, Tuple

from ._sync import OperatorClient
from .errors import InvalidTaskInputError, OperatorConnectionError, TaskTimeoutError
from .protocol.operator import validate_artifacts, validate_options
from .types import BatchTaskResult

__all__ = ("BatchOutcome", "Progress", "json_object", "new_cancel_key", "read_tasks", "run_batch")

TASK_KEYS = frozenset({"artifacts", "options"})
"""What a line may hold: ``{"artifacts": [...], "options": {...}}`` (both optional)."""


def read_tasks(path: str) -> List[Tuple[List[Dict[str, Any]], Dict[str, Any]]]:
    """Every task of a JSON-lines file (``-``: standard input), checked; ``InvalidTaskInputError`` names
    the first bad line, ``OSError`` a file that cannot be read."""
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    try:
        tasks = []
        for number, line in enumerate(stream, 1):
            if line.strip():
                tasks.append(_task(line, number))
        return tasks
    finally:
        if stream is not sys.stdin:
            stream.close()


def json_object(text: str, what: str) -> Dict[str, Any]:
    """``text`` as a JSON object; ``InvalidTaskInputError`` naming ``what`` otherwise."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidTaskInputError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidTaskInputError(f"{what} must be a JSON object")
    return value


def _task(line: str, number: int) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    item = json_object(line, f"line {number}")
    unknown = sorted(set(item) - TASK_KEYS)
    if unknown:
        raise InvalidTaskInputError(f"line {number} has unknown keys {unknown} (a task has 'artifacts' and 'options')")
    try:
        return validate_artifacts(item.get("artifacts", [])), validate_options(item.get("options", {}))
    except InvalidTaskInputError as exc:
        raise InvalidTaskInputError(f"line {number}: {exc}") from None


class BatchOutcome:
    """How a batch is going: tasks done, succeeded, and failed by kind (the exit code's basis)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.ok = total, 0, 0
        self.kinds: Dict[str, int] = {}

    @property
    def failed(self) -> int:
        return self.done - self.ok

    def add(self, result: BatchTaskResult) -> None:
        self.done += 1
        if result.success:
            self.ok += 1
        else:
            kind = (
                "connection"
                if isinstance(result.error, OperatorConnectionError)
                else ("timeout" if isinstance(result.error, TaskTimeoutError) else "task")
            )
            self.kinds[kind] = self.kinds.get(kind, 0) + 1


class Progress:
    """A one-line progress bar of a :class:`BatchOutcome` on standard error: rate, and an ETA once the
    rate means something (a tenth of a second and a hundredth of the tasks in, smoothed)."""

    def __init__(self, outcome: BatchOutcome, enabled: bool) -> None:
        self.outcome, self.enabled = outcome, enabled
        self.started = time.monotonic()
        self._last = 0.0
        self._rate: Optional[float] = None

    def show(self) -> None:
        """Redraw (at most every 0.1 s, and once at the end)."""
        done, total = self.outcome.done, self.outcome.total
        now = time.monotonic()
        if not self.enabled or (now - self._last <= 0.1 and done != total):
            return
        self._last = now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        self._rate = rate if self._rate is None else 0.7 * self._rate + 0.3 * rate
        settled = elapsed >= 0.1 and done >= max(1, total // 100)
        eta = f"{(total - done) / self._rate:,.1f}s" if settled and self._rate else "--"
        width = 30
        filled = int(width * done / max(total, 1))
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {rate:,.0f}/s ETA {eta} "
            f"failed {self.outcome.failed}"
        )
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def run_batch(
    client: OperatorClient,
    tasks: Sequence[Tuple[Any, Any]],
    *,
    ordered: bool,
    out: TextIO,
    progress: Progress,
    priority: Optional[str],
    timeout: Optional[float],
    cancel_key: Optional[str],
) -> None:
    """Submit ``tasks`` (each tagged with ``cancel_key``) and write one JSON line per result, counting
    them in ``progress.outcome``; Ctrl-C sets the cancel key (operators skip every task not yet started),
    then re-raises."""
    results = client.batch_iter(tasks, priority=priority, timeout=timeout, cancel_key=cancel_key)  # type: ignore[arg-type]
    try:
        for line in _lines(results, progress, ordered, len(tasks)):
            out.write(json.dumps(line, default=str, ensure_ascii=False) + "\n")
    except KeyboardInterrupt:
        if cancel_key:
            client.cancel(cancel_key)
        raise
    finally:
        results.close()  # type: ignore[attr-defined]  # never left to interpreter shutdown


def _lines(
    results: Iterator[BatchTaskResult], progress: Progress, ordered: bool, total: int
) -> Iterator[Dict[str, Any]]:
    """The output lines, in completion or input order. Tasks that never reached the broker come first:
    they are held until a task shows the broker works, and when none does, their error is raised once."""
    held: Optional[List[BatchTaskResult]] = []
    pending: List[Optional[BatchTaskResult]] = [None] * total
    next_index = 0

    def emit(result: BatchTaskResult) -> Iterator[Dict[str, Any]]:
        nonlocal next_index
        if not ordered:
            yield result_line(result)
            return
        pending[result.index] = result
        while next_index < total and pending[next_index] is not None:
            yield result_line(pending[next_index])  # type: ignore[arg-type]
            next_index += 1

    for result in results:
        progress.outcome.add(result)
        progress.show()
        if held is not None:
            if not result.submitted and isinstance(result.error, OperatorConnectionError):
                held.append(result)
                if len(held) == total:
                    raise result.error  # every task: the same failure, said once
                continue
            earlier, held = held, None
            for item in earlier:
                yield from emit(item)
        yield from emit(result)


def result_line(result: BatchTaskResult) -> Dict[str, Any]:
    line: Dict[str, Any] = {
        "index": result.index,
        "task_id": result.task_id,
        "submitted": result.submitted,
        "success": result.success,
    }
    if result.success:
        line.update(artifacts=result.artifacts, results=result.results)
    else:
        line["error"] = {"type": type(result.error).__name__, "message": str(result.error)}
    return line


def new_cancel_key() -> str:
    return f"sandai-batch-{uuid.uuid4()}"
