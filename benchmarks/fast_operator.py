"""The fast operator every benchmark client talks to.

``python fast_operator.py NAME BROKER_URL [RESULT_URL]``. With a Redis broker it is a lean blocking loop
built only for speed, so that the benchmarks measure the clients and not the operator: take up to 512
messages per ``BLMPOP`` (all priority lists of ``normal|high|low|very_low.NAME.v1``), answer each as the
echo operator does (``{"echo": options["text"], "n_artifacts": n}``, a Celery SUCCESS record), and write
every answer (``SETEX`` + ``PUBLISH`` per task) with the next ``BLMPOP`` in one pipeline. It skips what
only tests need (``unacked`` bookkeeping, ``MULTI``, deadlines, cancel keys, desc). It uses the project's
sans-IO protocol layer for RESP, the kombu envelope, the Celery body and the result record.

With any other broker (the ``amqp_*`` workloads) it runs the ``FakeOperator``.
"""

from __future__ import annotations

import datetime
import socket
import sys
from typing import List, Tuple
from urllib.parse import urlsplit

from sandai_operator_client.protocol.celery import decode_task_body
from sandai_operator_client.protocol.kombu_redis import decode_redis_envelope, priority_list_names
from sandai_operator_client.protocol.resp import NEED_DATA, RespReader, encode_command, encode_commands
from sandai_operator_client.protocol.results import encode_result_record, result_key

PRIORITIES = ("high", "normal", "low", "very_low")
BATCH = 512
EXPIRES = 7200


def answer(raw: bytes) -> Tuple[str, bytes]:
    """The result key and record for one kombu Redis envelope."""
    envelope, body = decode_redis_envelope(raw)
    task_id = envelope["properties"]["correlation_id"]
    _, kwargs, _ = decode_task_body(body, envelope.get("content-type", ""))
    artifacts = kwargs.get("artifacts") or []
    options = kwargs.get("options") or {}
    result = {
        "task_id": task_id,
        "status": "success",
        "results": {"echo": options.get("text", ""), "n_artifacts": len(artifacts)},
        "error": None,
        "artifacts": [{"uri": a.get("uri"), "slot": a.get("slot")} for a in artifacts],
    }
    date_done = datetime.datetime.now(datetime.timezone.utc).isoformat()
    record = encode_result_record(task_id=task_id, status="SUCCESS", result=result, date_done=date_done)
    return result_key(task_id), record


def serve_redis(name: str, url: str) -> None:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = RespReader()
    lists = [lst for p in PRIORITIES for lst in priority_list_names(f"{p}.{name}.v1")]
    take = encode_command("BLMPOP", 1, len(lists), *lists, "RIGHT", "COUNT", BATCH)
    if parts.path.strip("/") not in ("", "0"):
        sock.sendall(encode_command("SELECT", parts.path.strip("/")))
        read_reply(sock, reader)
    pending_writes = 0
    sock.sendall(take)
    while True:
        for _ in range(pending_writes):  # the replies of the previous answers come first
            read_reply(sock, reader)
        taken = read_reply(sock, reader)
        commands: List[Tuple[object, ...]] = []
        if isinstance(taken, list):
            for raw in taken[1]:
                key, record = answer(raw)
                commands.append(("SETEX", key, EXPIRES, record))
                commands.append(("PUBLISH", key, record))
        pending_writes = len(commands)
        sock.sendall(encode_commands(commands) + take)


def read_reply(sock: socket.socket, reader: RespReader) -> object:
    while True:
        reply = reader.next_reply()
        if reply is not NEED_DATA:
            return reply
        data = sock.recv(262144)
        if not data:
            raise ConnectionError("Redis closed the connection")
        reader.feed(data)


def main() -> None:
    name, broker = sys.argv[1], sys.argv[2]
    backend = sys.argv[3] if len(sys.argv) > 3 else broker
    if urlsplit(broker).scheme == "redis" and backend == broker:
        serve_redis(name, broker)
        return
    import anyio

    from sandai_operator_client.testing import FakeOperator

    async def run() -> None:
        await FakeOperator(name, "v1", broker_url=broker, result_backend=backend, track_unacked=False).run()

    anyio.run(run)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
