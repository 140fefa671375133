"""Task and result serializers: json (with kombu's ``__type__`` wrappers) and msgpack. Never pickle.

The json dialect is kombu's: ``json.dumps`` defaults (``", "``/``": "`` separators, ASCII escapes) with
datetime, date, time, Decimal, UUID and bytes wrapped as ``{"__type__": ..., "__value__": ...}``; decoding
unwraps the same markers. msgpack uses ``use_bin_type=True`` / ``raw=False`` as kombu does.
"""

from __future__ import annotations

import base64
import json
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Optional, Tuple

if TYPE_CHECKING:
    import msgpack


__all__ = (
    "CONTENT_TYPES",
    "SERIALIZERS",
    "DecodeError",
    "EncodeError",
    "content_type_of",
    "dumps",
    "loads",
    "sniff_serializer",
)

SERIALIZERS = ("json", "msgpack")
# name -> (content_type, content_encoding), as kombu registers them
CONTENT_TYPES: Dict[str, Tuple[str, str]] = {
    "json": ("application/json", "utf-8"),
    "msgpack": ("application/x-msgpack", "binary"),
}
_BY_CONTENT_TYPE = {ct: name for name, (ct, _) in CONTENT_TYPES.items()}
_PICKLE_CONTENT_TYPES = {"application/x-python-serialize", "application/x-pickle"}


class EncodeError(ValueError):
    """A value cannot be carried by the chosen serializer."""


class DecodeError(ValueError):
    """Bytes that are not a value of an accepted serializer (garbage, truncated, unknown type, pickle)."""


def content_type_of(serializer: str) -> Tuple[str, str]:
    """``(content_type, content_encoding)`` for a serializer name."""
    try:
        return CONTENT_TYPES[serializer]
    except KeyError:
        raise EncodeError(f"unsupported serializer {serializer!r} (supported: {', '.join(SERIALIZERS)})") from None


def _as(marker: str, value: Any) -> Dict[str, Any]:
    return {"__type__": marker, "__value__": value}


class _KombuJSONEncoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        # imported here: only values json cannot carry natively get this far (keeps the import light)
        import datetime
        import uuid
        from decimal import Decimal

        if isinstance(o, datetime.datetime):
            return _as("datetime", o.isoformat())
        if isinstance(o, datetime.date):
            return _as("date", o.isoformat())
        if isinstance(o, datetime.time):
            return _as("time", o.isoformat())
        if isinstance(o, Decimal):
            return _as("decimal", str(o))
        if isinstance(o, uuid.UUID):
            return _as("uuid", {"hex": o.hex})
        if isinstance(o, bytes):
            try:
                return _as("bytes", o.decode("utf-8"))
            except UnicodeDecodeError:
                return _as("base64", base64.b64encode(o).decode("ascii"))
        return super().default(o)


def _decoders() -> Dict[str, Callable[[Any], Any]]:
    import datetime
    import uuid
    from decimal import Decimal

    return {
        "datetime": datetime.datetime.fromisoformat,
        "date": lambda v: datetime.datetime.fromisoformat(v).date(),
        "time": datetime.time.fromisoformat,
        "decimal": Decimal,
        "uuid": lambda v: uuid.UUID(**v),
        "bytes": lambda v: v.encode("utf-8"),
        "base64": lambda v: base64.b64decode(v.encode("ascii")),
    }


def _object_hook(obj: Dict[str, Any]) -> Any:
    if len(obj) == 2 and "__type__" in obj and "__value__" in obj:
        decoder = _decoders().get(obj["__type__"])
        if decoder is None:
            raise DecodeError(f"unsupported json __type__ {obj['__type__']!r}")
        return decoder(obj["__value__"])
    return obj


_PLAIN_JSON = json.JSONDecoder()
_KOMBU_JSON = json.JSONDecoder(object_hook=_object_hook)


class _Packers(threading.local):
    """A msgpack ``Packer`` per thread: ``packb`` builds one per call, which cost as much as the packing."""

    packer: Optional[msgpack.Packer] = None


_packers = _Packers()


def _packer() -> msgpack.Packer:
    packer = _packers.packer
    if packer is None:
        import msgpack  # imported on first use: only msgpack users pay its 0.8 MB

        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
    return packer


def dumps(value: Any, serializer: str) -> bytes:
    """Serialize ``value``; raises :class:`EncodeError` for values the serializer cannot carry."""
    try:
        if serializer == "json":
            return json.dumps(value, cls=_KombuJSONEncoder).encode("utf-8")
        if serializer == "msgpack":
            return _packer().pack(value)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise EncodeError(f"cannot serialize with {serializer}: {exc}") from exc
    content_type_of(serializer)  # raises the clear error for unknown names
    raise AssertionError("unreachable")


def sniff_serializer(data: bytes) -> str:
    """Guess the serializer of a Celery result record from its first bytes (records carry no content type).

    json records start with ``{``; msgpack records with a map header. Pickle (``\\x80`` + protocol byte) is
    recognised only to be refused.
    """
    if not data:
        raise DecodeError("empty record")
    first = data[0]
    if first == 0x80 and len(data) > 1 and data[1] <= 0x05:
        raise DecodeError("pickle record refused: this client never unpickles")
    if first in b"{[ \t\r\n":
        return "json"
    if 0x80 <= first <= 0x8F or first in (0xDE, 0xDF):  # a msgpack map
        return "msgpack"
    raise DecodeError(f"unrecognised record encoding (first byte {data[:1]!r})")


def loads(data: bytes, serializer: str, accept: Iterable[str] = SERIALIZERS, *, strict_map_key: bool = False) -> Any:
    """Decode ``data`` written with ``serializer`` (a name or a content type) if it is accepted.

    ``strict_map_key``: msgpack maps may only have ``str`` or ``bytes`` keys, as kombu's consumer (and so
    every operator) decodes task messages. Raises :class:`DecodeError` for anything else, including
    pickle content types: never unpickles.
    """
    name = _BY_CONTENT_TYPE.get(serializer, serializer)
    if serializer in _PICKLE_CONTENT_TYPES or name == "pickle":
        raise DecodeError("pickle content refused: this client never unpickles")
    if name not in CONTENT_TYPES:
        raise DecodeError(f"unknown content type {serializer!r}")
    if name not in accept:
        raise DecodeError(f"content type {serializer!r} is not accepted (accept: {list(accept)})")
    try:
        if name == "json":
            if b'"__type__"' not in data:  # no kombu wrappers: the C decoder alone, no Python hook per object
                return _PLAIN_JSON.decode(data.decode("utf-8"))
            return _KOMBU_JSON.decode(data.decode("utf-8"))
        import msgpack

        return msgpack.unpackb(data, raw=False, strict_map_key=strict_map_key)
    except DecodeError:
        raise
    except Exception as exc:  # json, msgpack, unicode and __type__ decoders raise many types
        raise DecodeError(f"invalid {name} data: {type(exc).__name__}: {exc}") from exc
