"""Celery protocol v2 task messages (sans-IO).

What ``celery.app.amqp.AMQP.as_task_v2`` + ``send_task`` produce for a plain task with keyword arguments,
as the golden captures in ``protocol_fixtures/`` show: the headers, the basic properties, and the body
``[args, kwargs, embed]`` serialized with the task serializer.
"""

from __future__ import annotations

import reprlib
from typing import Any, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

from .serialization import DecodeError, content_type_of, dumps, loads

__all__ = (
    "REPR_MAXSIZE",
    "TaskMessage",
    "TaskShape",
    "decode_task_body",
    "encode_task",
    "encode_task_message",
    "operator_task_name",
)

REPR_MAXSIZE = 1024  # Celery's argsrepr_maxsize / kwargsrepr_maxsize
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


class TaskShape(NamedTuple):
    """What every message of one kind shares: the encoding arguments other than the task itself."""

    task_name: str
    origin: str
    reply_to: str = ""
    priority: int = 0
    time_limit: Tuple[Optional[float], Optional[float]] = (None, None)
    ignore_result: Optional[bool] = None


class TaskMessage(NamedTuple):
    """One encoded task: what any transport needs to publish it.

    Only what differs between tasks is stored (a client sends thousands that share one ``shape``);
    ``headers`` and ``properties`` are built from it when a transport asks.
    """

    task_id: str
    body: bytes
    content_type: str
    content_encoding: str
    argsrepr: str
    kwargsrepr: str
    shape: TaskShape
    extra_headers: Optional[Mapping[str, Any]] = None

    @property
    def headers(self) -> Dict[str, Any]:
        """The Celery v2 message headers."""
        shape = self.shape
        headers: Dict[str, Any] = {
            "lang": "py",
            "task": shape.task_name,
            "id": self.task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [shape.time_limit[0], shape.time_limit[1]],
            "root_id": self.task_id,
            "parent_id": None,
            "argsrepr": self.argsrepr,
            "kwargsrepr": self.kwargsrepr,
            "origin": shape.origin,
            "ignore_result": shape.ignore_result,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        }
        if self.extra_headers:
            headers.update(self.extra_headers)
        return headers

    @property
    def properties(self) -> Dict[str, Any]:
        """The message properties (``correlation_id`` is the task id: the operator's client task id)."""
        return {
            "correlation_id": self.task_id,
            "reply_to": self.shape.reply_to,
            "delivery_mode": 2,
            "priority": self.shape.priority,
        }

    @property
    def uniform(self) -> bool:
        """True when the message differs from others of its shape and content type only in task id,
        reprs and body (no extra headers), so a transport may encode it from a template."""
        return not self.extra_headers


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
    shape = TaskShape(task_name, origin, reply_to, priority, (time_limit[0], time_limit[1]), ignore_result)
    return encode_task(
        shape, task_id=task_id, kwargs=kwargs, args=args, serializer=serializer, extra_headers=extra_headers
    )


def encode_task(
    shape: TaskShape,
    *,
    task_id: str,
    kwargs: Mapping[str, Any],
    args: Sequence[Any] = (),
    serializer: str = "msgpack",
    extra_headers: Optional[Mapping[str, Any]] = None,
) -> TaskMessage:
    """:func:`encode_task_message` for a sender that keeps one :class:`TaskShape` for all its tasks."""
    content_type, content_encoding = content_type_of(serializer)
    kwargs = kwargs if type(kwargs) is dict else dict(kwargs)
    body = dumps([list(args), kwargs, _EMBED], serializer)
    return TaskMessage(
        task_id,
        body,
        content_type,
        content_encoding,
        _safe_repr(tuple(args)) if args else "()",
        _safe_repr(kwargs),
        shape,
        dict(extra_headers) if extra_headers else None,
    )


def decode_task_body(body: bytes, content_type: str) -> Tuple[list, dict, dict]:  # type: ignore[type-arg]
    """Decode a v2 body into ``(args, kwargs, embed)``; raises :class:`DecodeError` on anything else
    (msgpack map keys that are not strings included, as kombu's consumer refuses them)."""
    value = loads(body, content_type, strict_map_key=True)
    if not (isinstance(value, list) and len(value) == 3):
        raise DecodeError("a Celery v2 body is a 3-item array [args, kwargs, embed]")
    args, kwargs, embed = value
    if not isinstance(args, list) or not isinstance(kwargs, dict) or not isinstance(embed, dict):
        raise DecodeError("a Celery v2 body is [list, dict, dict]")
    return args, kwargs, embed
