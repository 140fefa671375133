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


class Progress:
    """A one-line progress bar on standard error: rate, and an ETA once the rate means something (a tenth
    of a second and a hundredth of the tasks in, smoothed)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done, self.failed = total, enabled, 0, 0
        self.started = time.monotonic()
        self._last = 0.0
        self._rate: Optional[float] = None

    def update(self, result: BatchTaskResult) -> None:
        self.done += 1
        self.failed += not result.success
        now = time.monotonic()
        if not self.enabled or (now - self._last <= 0.1 and self.done != self.total):
            return
        self._last = now
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        self._rate = rate if self._rate is None else 0.7 * self._rate + 0.3 * rate
        settled = elapsed >= 0.1 and self.done >= max(1, self.total // 100)
        eta = f"{(self.total - self.done) / self._rate:,.1f}s" if settled and self._rate else "--"
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {rate:,.0f}/s ETA {eta} "
            f"failed {self.failed}"
        )
        if self.done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


class BatchOutcome:
    """How a batch ended, for the exit code and the summary."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.ok = total, 0, 0
        self.kinds: Dict[str, int] = {}

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

    def summary(self) -> str:
        failed = ", ".join(f"{n} {kind}" for kind, n in sorted(self.kinds.items()))
        return f"{self.done} of {self.total} tasks done, {self.ok} succeeded" + (
            f", failed: {failed}" if failed else ""
        )


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
) -> BatchOutcome:
    """Submit ``tasks`` (each tagged with ``cancel_key``) and write one JSON line per result; Ctrl-C
    sets the cancel key (operators skip every task not yet started), then re-raises."""
    outcome = BatchOutcome(len(tasks))
    results = client.batch_iter(tasks, priority=priority, timeout=timeout, cancel_key=cancel_key)  # type: ignore[arg-type]
    try:
        for line in _lines(results, outcome, progress, ordered, len(tasks)):
            out.write(json.dumps(line, default=str, ensure_ascii=False) + "\n")
    except KeyboardInterrupt:
        if cancel_key:
            client.cancel(cancel_key)
        raise
    finally:
        results.close()  # type: ignore[attr-defined]  # never left to interpreter shutdown
    return outcome


def _lines(
    results: Iterator[BatchTaskResult], outcome: BatchOutcome, progress: Progress, ordered: bool, total: int
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
        outcome.add(result)
        progress.update(result)
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
