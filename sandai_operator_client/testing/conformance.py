"""Conformance run: check a live operator against the protocol this client speaks.

``sandai-operator conformance NAME VERSION`` or :func:`run_conformance` (sync client) /
:func:`check_operator` (async core). Each check names what it sent and what came back, so a failing
operator gets a precise reason.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, List, Optional

from .._core.core import OperatorCore
from .._core.ids import new_uuid4
from ..config import VALID_PRIORITIES, CeleryConfig
from ..errors import OperatorError, TaskCancelledError, TaskDeadlineExceededError, TaskTimeoutError
from ..protocol.operator import DESC_QUERY, build_task_payload, parse_desc_result, parse_task_result
from ..protocol.results import decode_result_record
from ..protocol.serialization import DecodeError

__all__ = ("CheckResult", "ConformanceReport", "check_operator", "run_conformance")


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, whether it passed, and why not."""

    name: str
    passed: bool
    detail: str = ""


@dataclass
class ConformanceReport:
    """All checks of one run."""

    operator: str
    checks: List[CheckResult] = field(default_factory=list)
    duration: float = 0.0
    unanswered: bool = False
    """A check got no answer: the later ones were skipped and the run's queued tasks withdrawn."""
    withdrawn: int = 0
    """Tasks of this run taken back off the queues (no operator had taken them)."""

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    def render(self) -> str:
        """A plain-text pass/fail report."""
        lines = [f"conformance of {self.operator}:"]
        for check in self.checks:
            mark = "PASS" if check.passed else "FAIL"
            lines.append(f"  [{mark}] {check.name}" + (f": {check.detail}" if check.detail else ""))
        lines.append(f"{sum(c.passed for c in self.checks)}/{len(self.checks)} checks passed in {self.duration:.1f}s")
        if self.unanswered:
            lines.append(
                f"the operator stopped answering: later checks skipped, {self.withdrawn} queued task(s) "
                "withdrawn, the rest tagged with a cancel key"
            )
        return "\n".join(lines)


async def _check(report: ConformanceReport, name: str, probe: Callable[[], Awaitable[Optional[str]]]) -> None:
    if report.unanswered:  # one unanswered check is enough: waiting out the rest would only add time
        report.checks.append(CheckResult(name, False, "skipped: the operator did not answer an earlier check"))
        return
    try:
        problem = await probe()
    except TaskTimeoutError as exc:
        problem = f"no answer: {exc}"
        report.unanswered = True
    except OperatorError as exc:
        problem = f"{type(exc).__name__}: {exc}"
    report.checks.append(CheckResult(name, problem is None, problem or ""))


async def check_operator(core: OperatorCore, timeout: float = 60) -> ConformanceReport:
    """Run every check through ``core`` (tasks go to the operator's real queues)."""
    config = core.config
    report = ConformanceReport(f"{config.operator_name} {config.operator_version}")

    published: List[Any] = []  # every task of this run, to withdraw what no operator took
    run_key = f"sandai-conformance-{config.operator_name}-{new_uuid4()}"  # on every task that may carry one

    async def publish(task: Any, on: OperatorCore = core) -> None:
        published.append(task)
        await on.publish_one(task)

    async def ask(payload: Any, priority: str, on: OperatorCore = core) -> tuple[str, Any]:
        task = on.prepare_payload(dict(payload), priority)
        await publish(task, on)
        return task.task_id, await on.get_result(task.task_id, timeout)

    async def desc_shape() -> Optional[str]:
        task_id, envelope = await ask(DESC_QUERY, "high")
        if not isinstance(envelope, dict) or envelope.get("status") != "success":
            return f"desc answered {envelope!r:.200}"
        missing = [k for k in ("doc", "options_schema", "results_schema") if k not in envelope]
        parse_desc_result(task_id, envelope)
        return f"desc lacks {missing}" if missing else None

    async def record_format() -> Optional[str]:
        task_id, _ = await ask(DESC_QUERY, "high")
        raw = await core.raw_record(task_id)
        if raw is None:
            return "no record under celery-task-meta-<id> after the result was published"
        try:
            record = decode_result_record(raw)
        except DecodeError as exc:
            return f"record is not a json/msgpack Celery record: {exc}"
        if record.status != "SUCCESS":
            return f"record status is {record.status!r}, expected SUCCESS"
        if record.task_id != task_id:
            return f"record task_id {record.task_id!r} is not the correlation_id {task_id!r}"
        if not record.date_done:
            return "record has no date_done"
        return None

    async def task_envelope() -> Optional[str]:
        task = core.prepare([], {}, cancel_key=run_key)
        await publish(task)
        envelope = await core.get_result(task.task_id, timeout)
        if not isinstance(envelope, dict):
            return f"result is not an envelope: {envelope!r:.200}"
        status = envelope.get("status")
        if status == "success":
            parse_task_result(task.task_id, envelope)
            if not isinstance(envelope.get("artifacts", []), list):
                return "success envelope: artifacts is not a list"
            return None
        if status == "error":
            error = envelope.get("error")
            if not isinstance(error, dict) or not {"error_type", "error_message"} <= set(error):
                return f"error envelope lacks error_type/error_message: {error!r:.200}"
            return None
        return f"envelope status {status!r} is neither success nor error"

    async def deadline() -> Optional[str]:
        payload = build_task_payload([], {}, deadline=time.time() - 60, cancel_key=None, persistent_output=False)
        task = core.prepare_payload(payload, core.check_priority(None))  # already past when it arrives
        await publish(task)
        envelope = await core.get_result(task.task_id, timeout)
        try:
            parse_task_result(task.task_id, envelope)
        except TaskDeadlineExceededError as exc:
            return None if exc.deadline and exc.current_time >= exc.deadline else "deadline details missing"
        except OperatorError as exc:
            return f"expected TaskDeadlineExceededError, got {type(exc).__name__}: {exc}"
        return "a task whose deadline had passed was executed"

    async def cancel_key() -> Optional[str]:
        key = f"sandai-conformance-{new_uuid4()}"
        await core.cancel(key, ttl=max(int(timeout) * 2, 60))
        task = core.prepare([], {}, cancel_key=key)
        await publish(task)
        envelope = await core.get_result(task.task_id, timeout)
        try:
            parse_task_result(task.task_id, envelope)
        except TaskCancelledError as exc:
            return None if exc.cancel_key == key else f"cancel_key detail is {exc.cancel_key!r}"
        except OperatorError as exc:
            return f"expected TaskCancelledError, got {type(exc).__name__}: {exc}"
        return "a task whose cancel key was set was executed"

    def priority_check(priority: str) -> Callable[[], Awaitable[Optional[str]]]:
        async def answered() -> Optional[str]:
            await ask(DESC_QUERY, priority)
            return None

        return answered

    def serializer_check(serializer: str) -> Callable[[], Awaitable[Optional[str]]]:
        async def answered() -> Optional[str]:
            celery = CeleryConfig(
                broker_url=config.broker_url,
                result_backend=config.result_backend,
                task_serializer=serializer,
                result_serializer=config.celery.result_serializer,
            )
            other = OperatorCore(dataclasses.replace(config, celery=celery))
            try:
                await ask(DESC_QUERY, "high", on=other)
            finally:
                await other.aclose()
            return None

        return answered

    started = time.monotonic()
    await _check(report, "desc answers with doc, options_schema, results_schema", desc_shape)
    await _check(report, "result record is a Celery record keyed by the correlation_id", record_format)
    await _check(report, "task answers with a success or error envelope", task_envelope)
    await _check(report, "deadline passed: skipped with TaskDeadlineExceededError", deadline)
    await _check(report, "cancel key set: skipped with TaskCancelledError", cancel_key)
    for priority in VALID_PRIORITIES:
        await _check(report, f"queue {config.queue_names[priority]} is consumed", priority_check(priority))
    for serializer in ("msgpack", "json"):
        await _check(report, f"{serializer} task messages are accepted", serializer_check(serializer))
    if report.unanswered:  # leave nothing behind for an operator that comes back later
        await core.cancel(run_key, ttl=max(int(timeout) * 2, 3600))
        report.withdrawn = await core.withdraw(published)
    report.duration = time.monotonic() - started
    return report


def run_conformance(client: Any, timeout: float = 60) -> ConformanceReport:
    """Run the checks through a blocking ``OperatorClient``."""
    return client._run(lambda core: check_operator(core, timeout))  # type: ignore[no-any-return]
