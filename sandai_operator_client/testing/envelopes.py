"""Compare a Redis list element (kombu envelope) with a golden capture, ignoring per-run fields."""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, Tuple, Union

from ..protocol.celery import decode_task_body
from ..protocol.kombu_redis import decode_redis_envelope

__all__ = ("VOLATILE_FIELDS", "assert_envelope_matches", "comparable_envelope")

VOLATILE_FIELDS = (
    ("headers", "id"),
    ("headers", "root_id"),
    ("headers", "origin"),
    ("headers", "kwargsrepr"),
    ("properties", "correlation_id"),
    ("properties", "reply_to"),
    ("properties", "delivery_tag"),
    ("properties", "delivery_info", "routing_key"),
)
"""Paths that differ from run to run (ids, host, the deadline inside kwargsrepr, the queue name)."""


def comparable_envelope(
    raw: Union[bytes, str],
    ignore: Iterable[Tuple[str, ...]] = VOLATILE_FIELDS,
    ignore_kwargs: Iterable[str] = ("deadline",),
) -> Dict[str, Any]:
    """The envelope as a dict with volatile fields blanked and the body decoded."""
    envelope, body = decode_redis_envelope(raw.encode() if isinstance(raw, str) else raw)
    args, kwargs, embed = decode_task_body(body, envelope["content-type"])
    for name in ignore_kwargs:
        if name in kwargs:
            kwargs[name] = "<ignored>"
    envelope = json.loads(json.dumps(envelope))
    for path in ignore:
        node = envelope
        for part in path[:-1]:
            node = node.get(part, {})
        if path[-1] in node:
            node[path[-1]] = "<ignored>"
    envelope["body"] = {"args": args, "kwargs": kwargs, "embed": embed}
    return envelope  # type: ignore[no-any-return]


def assert_envelope_matches(actual: Union[bytes, str], golden: Union[bytes, str], **options: Any) -> None:
    """Assert two envelopes are equal field by field except the volatile ones; the diff names the field."""
    a, g = comparable_envelope(actual, **options), comparable_envelope(golden, **options)
    if a != g:
        diffs = [f"{path}: {av!r} != {gv!r}" for path, av, gv in _diff(a, g, "")]
        raise AssertionError("envelope differs from the capture:\n  " + "\n  ".join(diffs))


def _diff(a: Any, b: Any, path: str) -> Iterable[Tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            yield from _diff(a.get(key, "<missing>"), b.get(key, "<missing>"), f"{path}.{key}")
    elif a != b:
        yield path or ".", a, b
