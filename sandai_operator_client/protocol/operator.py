"""The Sandai operator's payload and result envelope (sans-IO).

Payload (the task's kwargs): ``{meta: {"persistent-output": bool}, artifacts: [...], options: {...}}``
plus ``deadline`` (epoch seconds) and ``cancel_key`` when set; a ``desc`` query is ``{task_type: "desc"}``.
The operator answers through a SUCCESS record whose result is the envelope
``{task_id, status: success|error, artifacts, results, error: {error_type, error_message, error_details}}``.
"""

from __future__ import annotations

import math
import re
from collections import abc
from typing import Any, Dict, List, Mapping, NoReturn, Optional, Tuple

from ..errors import (
    InvalidResultFormatError,
    InvalidTaskInputError,
    InvalidTaskStatusError,
    TaskCancelledError,
    TaskDeadlineExceededError,
    TaskDeliveryLimitExceededError,
    TaskExecutionError,
)
from ..types import OperatorDescription, OperatorTaskResult
from .results import ResultRecord

__all__ = (
    "DESC_QUERY",
    "MAX_NESTING",
    "PROBE_OPTIONS",
    "build_task_payload",
    "check_string_keys",
    "envelope_from_record",
    "inspect_probe_result",
    "legacy_error_envelope",
    "parse_desc_result",
    "parse_task_result",
    "raise_task_error",
    "validate_artifacts",
    "validate_options",
)

DESC_QUERY: Dict[str, Any] = {"task_type": "desc"}
PROBE_OPTIONS: Dict[str, Any] = {"test": True}


MAX_NESTING = 256
"""How deeply options and artifacts may nest (containers within containers)."""


def check_string_keys(value: Any, name: str) -> None:
    """Every map inside ``value`` has ``str`` keys only and it nests at most ``MAX_NESTING`` levels (a
    reference cycle nests without end); ``InvalidTaskInputError`` otherwise.

    What the real operator accepts: kombu decodes msgpack task messages with strict map keys (a message
    with an int or tuple key is refused and never answered), and json would turn an int key into a string.
    """
    pending: List[Tuple[Any, int]] = [(value, 0)]
    while pending:  # depth first: a cycle reaches the limit after a few hundred steps, however wide
        item, depth = pending.pop()
        if depth > MAX_NESTING:
            raise InvalidTaskInputError(f"{name} nest more than {MAX_NESTING} levels deep (or hold a cycle)")
        if isinstance(item, abc.Mapping):
            for key, member in item.items():
                if type(key) is not str:
                    raise InvalidTaskInputError(f"{name}: map keys must be strings, got {key!r}")
                if isinstance(member, _CONTAINERS):
                    pending.append((member, depth + 1))
        else:
            pending.extend((member, depth + 1) for member in item if isinstance(member, _CONTAINERS))


_CONTAINERS = (abc.Mapping, list, tuple)


def validate_artifacts(artifacts: Any) -> List[Dict[str, Any]]:
    """Check ``input_artifacts``: a list of dicts, each with a string ``uri`` (all keys strings)."""
    if type(artifacts) is not list and (isinstance(artifacts, (str, bytes)) or not isinstance(artifacts, abc.Sequence)):
        raise InvalidTaskInputError(f"input_artifacts must be a list of dicts, not {type(artifacts).__name__}")
    checked = []
    for i, artifact in enumerate(artifacts):
        if type(artifact) is not dict and not isinstance(artifact, abc.Mapping):
            raise InvalidTaskInputError(f"input_artifacts[{i}] must be a dict, not {type(artifact).__name__}")
        uri = artifact.get("uri")
        if not isinstance(uri, str) or not uri:
            raise InvalidTaskInputError(f"input_artifacts[{i}] needs a non-empty string 'uri'")
        checked.append(dict(artifact))
    check_string_keys(checked, "input_artifacts")
    return checked


def validate_options(options: Any) -> Dict[str, Any]:
    """Check ``options``: a dict with string keys (at every level)."""
    if type(options) is not dict and not isinstance(options, abc.Mapping):
        raise InvalidTaskInputError(f"options must be a dict, not {type(options).__name__}")
    checked = dict(options)
    check_string_keys(checked, "options")
    return checked


def build_task_payload(
    input_artifacts: Any,
    options: Any,
    *,
    deadline: Optional[float],
    cancel_key: Optional[str],
    persistent_output: bool,
    extra: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """The operator payload; ``deadline`` is absolute (the caller turns a timeout into it with its clock)."""
    payload: Dict[str, Any] = {
        "meta": {"persistent-output": bool(persistent_output)},
        "artifacts": validate_artifacts(input_artifacts),
        "options": validate_options(options),
    }
    if deadline is not None:
        number = type(deadline) is float or (isinstance(deadline, (int, float)) and not isinstance(deadline, bool))
        if not number or not math.isfinite(deadline):
            raise InvalidTaskInputError(f"deadline must be a finite number, not {deadline!r}")
        payload["deadline"] = float(deadline)
    if cancel_key:
        if not isinstance(cancel_key, str):
            raise InvalidTaskInputError(f"cancel_key must be a string, not {type(cancel_key).__name__}")
        payload["cancel_key"] = cancel_key
    if extra:
        payload.update(extra)
    return payload


def envelope_from_record(task_id: str, record: ResultRecord) -> Any:
    """The operator's raw envelope from a ready record; FAILURE and REVOKED raise TaskExecutionError,
    except an old operator's error stored as a FAILURE (:func:`legacy_error_envelope`)."""
    if record.status == "SUCCESS":
        return record.result
    if record.status == "FAILURE":
        exc = record.result if isinstance(record.result, abc.Mapping) else {}
        exc_type = str(exc.get("exc_type") or "Exception")
        raw_message = exc.get("exc_message")
        if isinstance(raw_message, (list, tuple)):
            message = " ".join(str(part) for part in raw_message) if len(raw_message) != 1 else str(raw_message[0])
        else:
            message = str(raw_message if raw_message is not None else record.result)
        if exc_type == "Exception" and exc.get("exc_module") in (None, "builtins"):
            legacy = legacy_error_envelope(task_id, message)
            if legacy is not None:
                return legacy
        raise TaskExecutionError(
            task_id,
            message,
            {"exception_type": exc_type, "exc_module": exc.get("exc_module"), "traceback": record.traceback},
            error_type=exc_type,
        )
    if record.status == "REVOKED":
        raise TaskExecutionError(
            task_id, "task was revoked", {"exception_type": "TaskRevokedError"}, error_type="TaskRevokedError"
        )
    raise InvalidTaskStatusError(task_id, record.status)


_LEGACY_ERROR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*): (.*)", re.DOTALL)
_LEGACY_CANCELLED = re.compile(r"Task was cancelled via cancel_key: (.*)", re.DOTALL)
_LEGACY_DEADLINE = re.compile(r"Task deadline exceeded before processing: (\S+) < (\S+)")


def legacy_error_envelope(task_id: str, message: str) -> Optional[Dict[str, Any]]:
    """The modern error envelope of an error stored the SDK 0.4.0-and-older way, else None.

    Those operators store every non-success as a Celery FAILURE of a plain ``Exception`` whose message is
    ``"<error_type>: <error_message>"`` (the error details are lost); cancelled and expired tasks carry
    the messages the current operators put in their error envelopes, whose details are recovered here.
    """
    match = _LEGACY_ERROR.fullmatch(message)
    if match is None:
        return None
    error_type, error_message = match.groups()
    details: Dict[str, Any] = {"legacy_failure_record": True}
    if error_type == "TaskCancelledError":
        cancelled = _LEGACY_CANCELLED.fullmatch(error_message)
        if cancelled is not None:
            details["cancel_key"] = cancelled.group(1)
    elif error_type == "TaskDeadlineExceededError":
        expired = _LEGACY_DEADLINE.fullmatch(error_message)
        if expired is not None:
            try:
                details["deadline"], details["current_time"] = float(expired.group(1)), float(expired.group(2))
            except ValueError:
                pass
    return {
        "task_id": task_id,
        "status": "error",
        "artifacts": [],
        "results": None,
        "error": {"error_type": error_type, "error_message": error_message, "error_details": details},
    }


def _normalize_error_info(error_info: Any) -> Tuple[str, str, Dict[str, Any]]:
    if not isinstance(error_info, abc.Mapping):
        return "UnknownError", str(error_info) if error_info else "Unknown error", {}
    details = error_info.get("error_details") or {}
    if not isinstance(details, dict):
        details = {"raw_error_details": details}
    return (
        str(error_info.get("error_type") or "UnknownError"),
        str(error_info.get("error_message") or "Unknown error"),
        details,
    )


def raise_task_error(task_id: str, error_info: Any) -> NoReturn:
    """Raise the typed error an operator error envelope stands for."""
    error_type, message, details = _normalize_error_info(error_info)
    if error_type == "TaskDeadlineExceededError":
        raise TaskDeadlineExceededError(task_id, details.get("deadline", 0), details.get("current_time", 0))
    if error_type == "TaskCancelledError":
        raise TaskCancelledError(task_id, details.get("cancel_key", ""))
    if error_type == "TaskDeliveryLimitExceededError":
        raise TaskDeliveryLimitExceededError(task_id, message, details, error_type=error_type)
    raise TaskExecutionError(task_id, message, details, error_type=error_type)


def _checked_status(task_id: str, result: Any) -> Mapping[str, Any]:
    if not isinstance(result, abc.Mapping):
        raise InvalidResultFormatError(task_id, result)
    status = result.get("status", "unknown")
    if status == "error":
        raise_task_error(task_id, result.get("error", {}))
    if status != "success":
        raise InvalidTaskStatusError(task_id, str(status))
    return result


def parse_task_result(task_id: str, result: Any) -> OperatorTaskResult:
    """Outputs of a success envelope; typed errors for everything else."""
    envelope = _checked_status(task_id, result)
    # The record's own empty list is returned, not a new one: a batch keeps 2,000 of them.
    artifacts = envelope.get("artifacts")
    if not artifacts and type(artifacts) is not list:
        artifacts = []
    results = envelope.get("results")
    if not results and type(results) is not dict:
        results = {}
    if not isinstance(artifacts, list) or not isinstance(results, dict):
        raise InvalidResultFormatError(task_id, result)
    return OperatorTaskResult(artifacts=artifacts, results=results)


def parse_desc_result(task_id: str, result: Any) -> OperatorDescription:
    """The operator's description from a desc envelope."""
    envelope = _checked_status(task_id, result)
    return OperatorDescription(
        doc=envelope.get("doc"),
        options_schema=envelope.get("options_schema"),
        results_schema=envelope.get("results_schema"),
    )


def inspect_probe_result(result: Any) -> Tuple[bool, Optional[str]]:
    """``(response_ok, error)``: an operator envelope of either status proves the operator answered."""
    if not isinstance(result, abc.Mapping):
        return False, f"Invalid result format: {type(result)!r}"
    status = result.get("status")
    if status == "success":
        return True, None
    if status == "error":
        return True, _normalize_error_info(result.get("error", {}))[1]
    return False, f"Invalid task status: {status!r}"
