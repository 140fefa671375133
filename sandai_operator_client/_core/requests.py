"""One-shot requests of a core: a task's state or record, deleting it, a cancel key, queue depths,
withdrawing published tasks. Functions of an :class:`~.core.OperatorCore` (its methods of the same
names); a connection failure is an ``OperatorConnectionError`` (``Failures.mapped``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional, Sequence
from urllib.parse import urlsplit

from .._io.redis import REDIS_SCHEMES
from ..errors import InvalidTaskInputError, ResultDecodeError
from ..protocol.results import READY_STATES, decode_result_record, result_key
from ..protocol.serialization import DecodeError
from .broker import PreparedTask

if TYPE_CHECKING:
    from .core import OperatorCore

__all__ = ("cancel", "forget", "queue_depth", "raw_record", "ready", "state", "withdraw")


async def forget(core: OperatorCore, task_id: str) -> None:
    """Delete the task's result record."""
    core.check_open()
    with core.failures.mapped():
        await core.results_channel.execute("DEL", result_key(task_id))


async def state(core: OperatorCore, task_id: str) -> str:
    """The Celery state of a task: PENDING until a record exists, then the record's status."""
    core.check_open()
    with core.failures.mapped():
        raw = await core.results_channel.execute("GET", result_key(task_id))
    if not isinstance(raw, bytes):
        return "PENDING"
    try:
        return decode_result_record(raw, core.config.celery.accept_content or ("json", "msgpack")).status
    except DecodeError as exc:
        raise ResultDecodeError(task_id, str(exc), raw) from None


async def raw_record(core: OperatorCore, task_id: str) -> Optional[bytes]:
    """The task's result record exactly as stored (None while there is none)."""
    core.check_open()
    with core.failures.mapped():
        raw = await core.results_channel.execute("GET", result_key(task_id))
    return raw if isinstance(raw, bytes) else None


async def ready(core: OperatorCore, task_id: str) -> bool:
    """True once the task reached a final state (SUCCESS, FAILURE, REVOKED)."""
    return await state(core, task_id) in READY_STATES


async def cancel(core: OperatorCore, cancel_key: str, ttl: Optional[float] = None) -> None:
    """Set ``cancel_key`` (for ``ttl`` seconds, default the client timeout) where operators look for it.

    Operators check ``EXISTS <cancel_key>`` before computing a task that carries the key, and skip it
    with ``TaskCancelledError``: on the result backend's Redis (SDK 0.4.6 and later), on the broker's
    (SDK 0.4.0 and older). The key is set on both when the broker is another Redis URL.
    """
    core.check_open()
    if not isinstance(cancel_key, str) or not cancel_key:
        raise InvalidTaskInputError("cancel_key must be a non-empty string")
    seconds = int(ttl if ttl is not None else (core.config.timeout or 86400))
    if seconds <= 0:
        raise InvalidTaskInputError(f"ttl must be positive, not {ttl!r}")
    channels = [core.results_channel]
    broker_url = core.config.broker_url
    if broker_url != core.config.result_backend and urlsplit(broker_url).scheme in REDIS_SCHEMES:
        channels.append(core.command_channel(broker_url))
    for channel in channels:
        with core.failures.mapped():
            reply = await channel.execute("SET", cancel_key, "1", "EX", seconds)
        if reply != "OK":
            raise core.failures.connection(f"could not set the cancel key: {reply!r}")


async def withdraw(core: OperatorCore, tasks: Sequence[PreparedTask]) -> int:
    """Take published ``tasks`` back off their queues where no operator took them yet (Redis brokers;
    0 elsewhere); how many were withdrawn."""
    core.check_open()
    with core.failures.mapped():
        return await core.publisher.withdraw(tasks)


async def queue_depth(core: OperatorCore) -> Dict[str, int]:
    """Messages waiting per priority."""
    core.check_open()
    with core.failures.mapped():
        return {p: await core.publisher.queue_depth(q) for p, q in core.config.queue_names.items()}
