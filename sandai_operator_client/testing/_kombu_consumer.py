"""The fake operator's AMQP side: a kombu consumer in a worker thread, feeding the operator's loop."""

from __future__ import annotations

import importlib
import socket
import threading
from typing import Any, List, Optional, Sequence, Tuple

import anyio.from_thread
from anyio.streams.memory import MemoryObjectSendStream

__all__ = ("consume_kombu",)

Delivery = Tuple[str, Optional[str], bytes, str]
"""A message taken: its queue, its task id, its body, its content type."""


def consume_kombu(
    broker_url: str,
    queues: Sequence[str],
    prefetch: int,
    send: MemoryObjectSendStream[Delivery],
    stop: threading.Event,
    started: threading.Event,
    failure: List[BaseException],
) -> None:
    """Consume ``queues`` until ``stop`` is set (run in a worker thread); ``started`` is set once
    consuming, or once it failed (the failure in ``failure``)."""
    kombu: Any = importlib.import_module("kombu")
    try:
        with kombu.Connection(broker_url, connect_timeout=5) as connection:
            declared = [
                kombu.Queue(q, kombu.Exchange(q, type="direct", durable=True), routing_key=q, durable=True)
                for q in queues
            ]

            def on_message(message: Any) -> None:
                item = (
                    message.delivery_info.get("routing_key", ""),
                    message.properties.get("correlation_id"),
                    message.body,
                    message.content_type,
                )
                anyio.from_thread.run_sync(send.send_nowait, item)
                message.ack()

            with connection.Consumer(declared, on_message=on_message, prefetch_count=prefetch):
                started.set()
                while not stop.is_set():
                    try:
                        connection.drain_events(timeout=0.2)
                    except (socket.timeout, TimeoutError):
                        pass
    except BaseException as exc:  # reported to the loop
        failure.append(exc)
        started.set()
