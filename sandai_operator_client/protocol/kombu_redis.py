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
from json.encoder import encode_basestring_ascii
from operator import itemgetter
from typing import Any, Callable, Dict, List, Tuple

from .celery import TaskMessage
from .serialization import DecodeError

__all__ = (
    "PRIORITY_SEPARATOR",
    "PRIORITY_STEPS",
    "RedisEnvelopeEncoder",
    "decode_redis_envelope",
    "encode_redis_envelope",
    "priority_list_name",
    "priority_list_names",
)

PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)


def priority_list_name(queue: str, priority: int = 0) -> str:
    """The Redis list kombu uses for ``queue`` at message ``priority`` (rounded down to a step)."""
    if priority <= 0:  # what every task of ours is sent with
        return queue
    step = PRIORITY_STEPS[max(bisect.bisect(PRIORITY_STEPS, priority) - 1, 0)]
    return queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}"


def priority_list_names(queue: str) -> Tuple[str, ...]:
    """All Redis lists that hold messages of ``queue``, in kombu's consumption order."""
    return tuple(priority_list_name(queue, step) for step in PRIORITY_STEPS)


def encode_redis_envelope(message: TaskMessage, *, queue: str, delivery_tag: str, exchange: str = "") -> bytes:
    """The exact list element kombu's Redis transport writes for ``message`` published to ``queue``."""
    body = base64.b64encode(message.body).decode("ascii")
    return json.dumps(_envelope(message, body, queue=queue, delivery_tag=delivery_tag, exchange=exchange)).encode()


def _envelope(message: TaskMessage, body: str, *, queue: str, delivery_tag: str, exchange: str) -> Dict[str, Any]:
    properties = dict(message.properties)
    properties["delivery_info"] = {"exchange": exchange, "routing_key": queue}
    properties["body_encoding"] = "base64"
    properties["delivery_tag"] = delivery_tag
    return {
        "body": body,
        "content-encoding": message.content_encoding,
        "content-type": message.content_type,
        "headers": message.headers,
        "properties": properties,
    }


# Placeholders for what differs between messages of one shape; json.dumps escapes NUL, so an encoded
# placeholder cannot occur anywhere else in an envelope.
_SLOTS = ("id", "argsrepr", "kwargsrepr", "body", "tag")
_PLACEHOLDER = {slot: f"\x00{slot}\x00" for slot in _SLOTS}
_TEMPLATE_CACHE_LIMIT = 64


class RedisEnvelopeEncoder:
    """:func:`encode_redis_envelope`, byte for byte, with one template per message shape and queue.

    The envelope of a uniform message differs from every other of its shape and content type only in
    the task id, the reprs, the body and the delivery tag, so those are JSON-encoded alone and
    spliced into a template made once by ``json.dumps`` itself (three times faster than encoding the
    whole envelope per message). Other messages take :func:`encode_redis_envelope`.
    """

    def __init__(self) -> None:
        self._templates: Dict[Tuple[Any, ...], Tuple[str, Callable[[Tuple[str, ...]], Tuple[str, ...]]]] = {}

    def encode(self, message: TaskMessage, *, queue: str, delivery_tag: str, exchange: str = "") -> bytes:
        """The list element for ``message`` published to ``queue``."""
        if not message.uniform:
            return encode_redis_envelope(message, queue=queue, delivery_tag=delivery_tag, exchange=exchange)
        key = (message.shape, message.content_type, queue, exchange)
        found = self._templates.get(key)
        if found is None:
            if len(self._templates) >= _TEMPLATE_CACHE_LIMIT:
                self._templates.clear()
            found = self._templates[key] = _make_template(message, queue, exchange)
        template, in_order = found
        values = (  # in _SLOTS order
            encode_basestring_ascii(message.task_id),
            encode_basestring_ascii(message.argsrepr),
            encode_basestring_ascii(message.kwargsrepr),
            f'"{base64.b64encode(message.body).decode("ascii")}"',
            encode_basestring_ascii(delivery_tag),
        )
        return (template % in_order(values)).encode()


def _make_template(
    message: TaskMessage, queue: str, exchange: str
) -> Tuple[str, Callable[[Tuple[str, ...]], Tuple[str, ...]]]:
    """The envelope as a %-template, and what puts the slot values (in ``_SLOTS`` order) in its order."""
    placeholder_id = _PLACEHOLDER["id"]
    prototype = message._replace(
        task_id=placeholder_id, body=b"", argsrepr=_PLACEHOLDER["argsrepr"], kwargsrepr=_PLACEHOLDER["kwargsrepr"]
    )
    text = json.dumps(
        _envelope(prototype, _PLACEHOLDER["body"], queue=queue, delivery_tag=_PLACEHOLDER["tag"], exchange=exchange)
    )
    encoded = {json.dumps(_PLACEHOLDER[slot]): slot for slot in _SLOTS}
    pieces: List[str] = []
    slots: List[str] = []
    rest = text
    while True:
        hits = [(rest.find(marker), marker) for marker in encoded if marker in rest]
        if not hits:
            break
        position, marker = min(hits)
        pieces.append(rest[:position].replace("%", "%%"))
        slots.append(encoded[marker])
        rest = rest[position + len(marker) :]
    pieces.append(rest.replace("%", "%%"))
    in_order = itemgetter(*[_SLOTS.index(slot) for slot in slots])  # several slots: returns a tuple
    return "%s".join(pieces), in_order


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
