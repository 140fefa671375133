"""kombu's Redis transport: the JSON envelope it keeps in a Redis list, and the priority list names.

kombu's Redis ``Channel._put`` LPUSHes ``json.dumps(message)`` onto the list named after the queue; the
body is base64 (``body_encoding: "base64"``); ``delivery_info`` names the default exchange ``""`` and the
queue as routing key. Priorities map onto separate lists ``<queue>\\x06\\x16<step>`` for the steps
0/3/6/9 (step 0 is the bare queue name). The consumer BRPOPs the lists.
"""

from __future__ import annotations

import base64
import bisect
import json
from typing import Any, Dict, Tuple

from .celery import TaskMessage
from .serialization import DecodeError

__all__ = (
    "PRIORITY_SEPARATOR",
    "PRIORITY_STEPS",
    "decode_redis_envelope",
    "encode_redis_envelope",
    "priority_list_name",
    "priority_list_names",
)

PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)


def priority_list_name(queue: str, priority: int = 0) -> str:
    """The Redis list kombu uses for ``queue`` at message ``priority`` (rounded down to a step)."""
    step = PRIORITY_STEPS[max(bisect.bisect(PRIORITY_STEPS, priority) - 1, 0)]
    return queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}"


def priority_list_names(queue: str) -> Tuple[str, ...]:
    """All Redis lists that hold messages of ``queue``, in kombu's consumption order."""
    return tuple(priority_list_name(queue, step) for step in PRIORITY_STEPS)


def encode_redis_envelope(message: TaskMessage, *, queue: str, delivery_tag: str, exchange: str = "") -> bytes:
    """The exact list element kombu's Redis transport writes for ``message`` published to ``queue``."""
    properties = dict(message.properties)
    properties["delivery_info"] = {"exchange": exchange, "routing_key": queue}
    properties["body_encoding"] = "base64"
    properties["delivery_tag"] = delivery_tag
    envelope = {
        "body": base64.b64encode(message.body).decode("ascii"),
        "content-encoding": message.content_encoding,
        "content-type": message.content_type,
        "headers": message.headers,
        "properties": properties,
    }
    return json.dumps(envelope).encode("utf-8")


def decode_redis_envelope(raw: bytes) -> Tuple[Dict[str, Any], bytes]:
    """Parse a list element into ``(envelope, body bytes)``; raises :class:`DecodeError` on garbage."""
    try:
        envelope = json.loads(raw)
        body_encoding = envelope["properties"].get("body_encoding")
        body = envelope["body"]
        data = base64.b64decode(body) if body_encoding == "base64" else str(body).encode("utf-8")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DecodeError(f"not a kombu Redis envelope: {exc}") from exc
    if not isinstance(envelope, dict):
        raise DecodeError("not a kombu Redis envelope")
    return envelope, data
