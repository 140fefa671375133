"""KombuPublisher: any kombu transport (``amqp://``, ``amqps://``, ...) for publishing, kombu imported lazily.

The message is the same Celery v2 message: headers become AMQP application headers and the properties
basic properties (``correlation_id`` = task id, ``delivery_mode`` 2, ``priority``, ``reply_to``). As Celery
does for a named queue, each operator queue is declared once per connection (durable, bound to a durable
direct exchange of the same name; the SDK's ``x-visibility-timeout`` argument is not one RabbitMQ checks
for equivalence), so a task sent before any operator ever started waits in its queue instead of being
dropped as unroutable. kombu is blocking: publishing runs in a worker thread (one at a time, one
connection); the core's group commit hands it concurrent submissions together, one hop per batch.
"""

from __future__ import annotations

import socket
from typing import Any, List, Optional, Protocol, Sequence, Set, Tuple

import anyio
import anyio.to_thread

from ..config import redact_url
from ..protocol.celery import TaskMessage
from .redis import ConnectionLost

__all__ = ("KombuPublisher",)


class OutgoingTask(Protocol):
    """What this publisher reads of a task (the core's ``PreparedTask`` has it)."""

    @property
    def queue(self) -> str: ...

    @property
    def message(self) -> TaskMessage: ...


class KombuPublisher:
    """Publish through kombu in a worker thread; declare each queue before its first message."""

    def __init__(self, url: str, *, connect_timeout: float = 5.0) -> None:
        import kombu  # the only place kombu is imported

        self._kombu: Any = kombu
        self._url = url
        self._connect_timeout = connect_timeout
        self._connection: Any = None
        self._producer: Any = None
        self._declared: Set[str] = set()
        self._limiter = anyio.CapacityLimiter(1)

    async def publish(self, tasks: Sequence[OutgoingTask]) -> List[Optional[str]]:
        """Publish in order; per task None or why it was not published."""
        return await anyio.to_thread.run_sync(self._publish_blocking, tasks, limiter=self._limiter)

    # ------------------------------------------------------------------ worker thread
    def _errors(self) -> tuple:  # type: ignore[type-arg]
        connection = self._connection
        extra = tuple(connection.connection_errors + connection.channel_errors) if connection is not None else ()
        return (OSError, socket.timeout, self._kombu.exceptions.OperationalError, *extra)

    def _connect(self) -> None:
        if self._producer is not None:
            return
        connection = self._kombu.Connection(self._url, connect_timeout=self._connect_timeout)
        try:
            connection.connect()
        except Exception as exc:
            connection.release()
            raise ConnectionLost(f"cannot connect to {redact_url(self._url)}: {_describe(exc, self._url)}") from None
        self._connection = connection
        self._producer = connection.Producer(auto_declare=False)
        self._declared = set()

    def _disconnect(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:
                pass

    def _declare(self, queue: str) -> None:
        kombu = self._kombu
        exchange = kombu.Exchange(queue, type="direct", durable=True)
        kombu.Queue(queue, exchange, routing_key=queue, durable=True)(self._connection.default_channel).declare()
        self._declared.add(queue)

    def _publish_one(self, task: OutgoingTask) -> None:
        if task.queue not in self._declared:
            self._declare(task.queue)
        message = task.message
        properties = message.properties
        self._producer.publish(
            message.body,
            exchange=task.queue,
            routing_key=task.queue,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            headers=message.headers,
            correlation_id=properties["correlation_id"],
            reply_to=properties["reply_to"],
            delivery_mode=properties["delivery_mode"],
            priority=properties["priority"],
            retry=False,
        )

    def _publish_blocking(self, tasks: Sequence[OutgoingTask]) -> List[Optional[str]]:
        results: List[Optional[str]] = []
        for index, task in enumerate(tasks):
            for attempt in (1, 2):
                try:
                    self._connect()
                    self._publish_one(task)
                    results.append(None)
                    break
                except ConnectionLost as exc:
                    reason = str(exc)
                except Exception as exc:
                    if not isinstance(exc, self._errors()):
                        raise
                    reason = f"{redact_url(self._url)}: {_describe(exc, self._url)}"
                self._disconnect()
                # a connection that died while idle fails on the first write: reconnect once and retry
                # that task; later failures are reported, never retried (a retry could duplicate)
                if attempt == 2 or index > 0 or "cannot connect" in reason:
                    return results + [reason] * (len(tasks) - index)
        return results

    # ------------------------------------------------------------------ other operations
    settlements = 0  # a publish is confirmed by the broker or fails: nothing is ever settled afterwards

    async def whereabouts(self, task: OutgoingTask, result_on_broker: bool) -> Tuple[Optional[str], Optional[int]]:
        """AMQP cannot tell where a published message is without consuming it: ``(None, None)``."""
        return None, None

    async def withdraw(self, tasks: Sequence[OutgoingTask]) -> int:
        """AMQP cannot take a published message back: 0."""
        return 0

    async def queue_depth(self, queue: str) -> int:
        """Messages ready in ``queue`` (0 when it was never declared)."""

        def depth() -> int:
            self._connect()
            channel = self._connection.channel()
            try:
                return int(channel.queue_declare(queue=queue, passive=True).message_count)
            except self._errors():
                return 0
            finally:
                try:
                    channel.close()
                except Exception:
                    pass

        try:
            return await anyio.to_thread.run_sync(depth, limiter=self._limiter)
        except ConnectionLost:
            raise
        except Exception as exc:
            raise ConnectionLost(f"{redact_url(self._url)}: {_describe(exc, self._url)}") from None

    def abandon(self) -> None:
        """Close the kombu connection now, from any thread (it is only used from worker threads)."""
        self._disconnect()

    async def aclose(self) -> None:
        """Close the kombu connection."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._disconnect, limiter=self._limiter)


def _describe(exc: BaseException, url: str) -> str:
    text = str(exc) or type(exc).__name__
    password = _password(url)
    return text.replace(password, "***") if password else text


def _password(url: str) -> Optional[str]:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password
    except ValueError:
        return None
