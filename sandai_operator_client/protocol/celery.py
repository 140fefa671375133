"""Celery protocol v2 task messages (sans-IO).

What ``celery.app.amqp.AMQP.as_task_v2`` + ``send_task`` produce for a plain task with keyword arguments,
as the golden captures in ``protocol_fixtures/`` show: the headers, the basic properties, and the body
``[args, kwargs, embed]`` serialized with the task serializer.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from .serialization import DecodeError, content_type_of, dumps, loads

__all__ = (
    "REPR_MAXSIZE",
    "TaskMessage",
    "decode_task_body",
    "encode_task_message",
    "operator_task_name",
)

REPR_MAXSIZE = 1024  # Celery's argsrepr_maxsize / kwargsrepr_maxsize
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@dataclass(frozen=True)
class TaskMessage:
    """One encoded task: what any transport needs to publish it."""

    task_id: str
    headers: Dict[str, Any]
    properties: Dict[str, Any]
    body: bytes
    content_type: str
    content_encoding: str
    shape: Optional[Tuple[Any, ...]] = None
    """The encoding arguments shared by every message of one kind: messages of equal shape differ only in
    the task id, ``argsrepr``, ``kwargsrepr`` and body (None: extra headers make the message one of a kind).
    Lets transports reuse one template per shape; a message is never modified after it was encoded."""


def operator_task_name(operator_name: str, operator_version: str) -> str:
    """The Celery task name an operator registers: ``sandai_operator.<name>.<version>.process_task``."""
    return f"sandai_operator.{operator_name}.{operator_version}.process_task"


_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = REPR_MAXSIZE
_repr.maxdict = _repr.maxlist = _repr.maxtuple = 10_000
_repr.maxlevel = 64


def _safe_repr(value: Any) -> str:
    # Celery uses its own saferepr, which equals repr() for the plain values a payload holds; it is a
    # human-readable hint for monitoring tools, so a long value is cut, never rejected.
    text = repr(value)
    if len(text) > REPR_MAXSIZE:
        text = _repr.repr(value)[: REPR_MAXSIZE - 3] + "..."
    return text


def encode_task_message(
    *,
    task_id: str,
    task_name: str,
    kwargs: Mapping[str, Any],
    args: Sequence[Any] = (),
    serializer: str = "msgpack",
    origin: str,
    reply_to: str = "",
    priority: int = 0,
    time_limit: Tuple[Optional[float], Optional[float]] = (None, None),
    ignore_result: Optional[bool] = None,
    extra_headers: Optional[Mapping[str, Any]] = None,
) -> TaskMessage:
    """Encode a Celery v2 task message.

    ``task_id`` doubles as ``correlation_id`` (the operator's client task id) and ``root_id``.
    Raises :class:`~.serialization.EncodeError` when a value cannot be serialized.
    """
    content_type, content_encoding = content_type_of(serializer)
    body = dumps([list(args), dict(kwargs), _EMBED], serializer)
    headers: Dict[str, Any] = {
        "lang": "py",
        "task": task_name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [time_limit[0], time_limit[1]],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": _safe_repr(tuple(args)),
        "kwargsrepr": _safe_repr(dict(kwargs)),
        "origin": origin,
        "ignore_result": ignore_result,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    if extra_headers:
        headers.update(extra_headers)
    properties: Dict[str, Any] = {
        "correlation_id": task_id,
        "reply_to": reply_to,
        "delivery_mode": 2,
        "priority": priority,
    }
    return TaskMessage(
        task_id=task_id,
        headers=headers,
        properties=properties,
        body=body,
        content_type=content_type,
        content_encoding=content_encoding,
        shape=None if extra_headers else (task_name, serializer, origin, reply_to, priority, tuple(time_limit),
                                          ignore_result),
    )


def decode_task_body(body: bytes, content_type: str) -> Tuple[list, dict, dict]:  # type: ignore[type-arg]
    """Decode a v2 body into ``(args, kwargs, embed)``; raises :class:`DecodeError` on anything else."""
    value = loads(body, content_type)
    if not (isinstance(value, list) and len(value) == 3):
        raise DecodeError("a Celery v2 body is a 3-item array [args, kwargs, embed]")
    args, kwargs, embed = value
    if not isinstance(args, list) or not isinstance(kwargs, dict) or not isinstance(embed, dict):
        raise DecodeError("a Celery v2 body is [list, dict, dict]")
    return args, kwargs, embed
