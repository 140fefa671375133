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
