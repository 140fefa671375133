"""What a FakeOperator answers: a behaviour chooses a reply for each task from its payload."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Union

__all__ = ("Behaviour", "Crash", "Delay", "Echo", "Fail", "RawRecord", "Reply", "Succeed", "echo_behaviour")


@dataclass(frozen=True)
class Echo:
    """Succeed with ``{"echo": options["text"], "n_artifacts": n}`` and the input artifacts.

    The same answer as the real ``protocol_fixtures/echo_operator.py``.
    """


@dataclass(frozen=True)
class Succeed:
    """Succeed with these results and artifacts."""

    results: Dict[str, Any] = field(default_factory=dict)
    artifacts: List[Dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Fail:
    """Answer with an operator error envelope."""

    error_type: str = "OperatorFailure"
    error_message: str = "failed"
    error_details: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delay:
    """Wait, then answer with ``then``."""

    seconds: float
    then: Reply = field(default_factory=Echo)


@dataclass(frozen=True)
class Crash:
    """Consume the task and never answer (a worker that died)."""


@dataclass(frozen=True)
class RawRecord:
    """Write these bytes as the result record (garbage, pickle, truncated json, ...) and publish them."""

    data: bytes


Reply = Union[Echo, Succeed, Fail, Delay, Crash, RawRecord]
Behaviour = Callable[[Dict[str, Any]], Reply]
"""Chooses the reply for a task from its payload (the operator kwargs)."""


def echo_behaviour(payload: Dict[str, Any]) -> Reply:
    """The default: options ``fail`` -> error envelope, ``sleep`` -> delay, else echo."""
    options = payload.get("options") or {}
    reply: Reply = Echo()
    if options.get("fail"):
        reply = Fail("EchoFailure", "asked to fail", {"text": options.get("text")})
    if options.get("sleep"):
        reply = Delay(float(options["sleep"]), reply)
    return reply


def error_envelope(task_id: str, error_type: str, message: str, details: Dict[str, Any]) -> Dict[str, Any]:
    """An operator's error envelope, as the SDK writes it."""
    return {
        "task_id": task_id,
        "status": "error",
        "error": {"error_type": error_type, "error_message": message, "error_details": details},
        "artifacts": [],
        "results": None,
    }


def reply_envelope(reply: Reply, payload: Dict[str, Any], task_id: str) -> Union[bytes, Dict[str, Any], None]:
    """What to write for a final ``reply`` (not a ``Delay``): an envelope, a raw record, or None (``Crash``)."""
    if isinstance(reply, Crash):
        return None
    if isinstance(reply, RawRecord):
        return reply.data
    if isinstance(reply, Fail):
        return {**error_envelope(task_id, reply.error_type, reply.error_message, reply.error_details), "results": {}}
    artifacts = payload.get("artifacts") or []
    if isinstance(reply, Succeed):
        results_out, artifacts_out = reply.results, reply.artifacts
    else:
        options = payload.get("options") or {}
        results_out = {"echo": options.get("text", ""), "n_artifacts": len(artifacts)}
        artifacts_out = [{"uri": a.get("uri"), "slot": a.get("slot")} for a in artifacts]
    return {"task_id": task_id, "status": "success", "results": results_out, "error": None, "artifacts": artifacts_out}
