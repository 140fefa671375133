"""Celery result records (sans-IO): what Celery's Redis result backend keeps under ``celery-task-meta-<id>``.

A record is ``{status, result, traceback, children, date_done, task_id}`` serialized with the result
serializer (json or msgpack; records carry no content type, so the encoding is recognised from the first
byte). The operator SDK SETEXes and PUBLISHes the same bytes on the channel named like the key.
"""

from __future__ import annotations

from collections import abc
from typing import Any, Iterable, NamedTuple, Optional

from .serialization import SERIALIZERS, DecodeError, dumps, loads, sniff_serializer

__all__ = (
    "READY_STATES",
    "RESULT_KEY_PREFIX",
    "ResultRecord",
    "decode_result_record",
    "encode_result_record",
    "result_key",
    "task_id_from_key",
)

RESULT_KEY_PREFIX = "celery-task-meta-"
READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


class ResultRecord(NamedTuple):
    """A decoded Celery result record."""

    task_id: Optional[str]
    status: str
    result: Any
    traceback: Optional[str] = None
    date_done: Any = None
    children: Any = None

    @property
    def ready(self) -> bool:
        """True for the final states (SUCCESS, FAILURE, REVOKED); a waiter is resolved only by these."""
        return self.status in READY_STATES


def result_key(task_id: str) -> str:
    """The key (and pub/sub channel) of a task's result record."""
    return RESULT_KEY_PREFIX + task_id


def task_id_from_key(key: str) -> str:
    """Inverse of :func:`result_key`."""
    if not key.startswith(RESULT_KEY_PREFIX):
        raise ValueError(f"not a result key: {key!r}")
    return key[len(RESULT_KEY_PREFIX) :]


def decode_result_record(raw: bytes, accept: Iterable[str] = SERIALIZERS) -> ResultRecord:
    """Decode a record; raises :class:`~.serialization.DecodeError` for anything that is not one."""
    value = loads(raw, sniff_serializer(raw), accept)
    if not isinstance(value, abc.Mapping):
        raise DecodeError(f"a result record is a map, not {type(value).__name__}")
    status = value.get("status")
    if not isinstance(status, str):
        raise DecodeError("a result record needs a string 'status'")
    return ResultRecord(
        task_id=value.get("task_id"),
        status=status,
        result=value.get("result"),
        traceback=value.get("traceback"),
        date_done=value.get("date_done"),
        children=value.get("children"),
    )


def encode_result_record(
    *,
    task_id: str,
    status: str,
    result: Any,
    date_done: str,
    serializer: str = "json",
    traceback: Optional[str] = None,
) -> bytes:
    """Encode a record as Celery's backend does (``date_done`` given by the caller: no clock here)."""
    return dumps(
        {
            "status": status,
            "result": result,
            "traceback": traceback,
            "children": None,
            "date_done": date_done,
            "task_id": task_id,
        },
        serializer,
    )
