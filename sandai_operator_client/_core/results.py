"""ResultHub: one pub/sub connection serves every waiter of a client (DESIGN.md section 3).

Per watch: SUBSCRIBE the result channels (one command for many ids) and wait for the server's
confirmation; when the task may already have finished (it was published before we subscribed, or we
were reconnecting) MGET the keys once; then wait for the PUBLISH. A ready record resolves every watch of
that id. Leaving a watch (normally, by cancellation or timeout) UNSUBSCRIBEs channels nobody else watches.

Reading is leader/follower instead of a background task: the first waiter that finds nobody reading
reads the socket and dispatches what arrives to the other waiters; when its own results are in (or it is
cancelled) it wakes one waiting follower to take over. Bytes already read stay buffered in the
connection, so a reader cancelled mid-read loses nothing. On a dropped connection the reader reconnects
with backoff, re-SUBSCRIBEs every watched channel, then MGETs their keys: results published meanwhile
are in the keys (Celery SETEXes before it PUBLISHes), so nothing awaited is lost.
"""

from __future__ import annotations

from collections import deque
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable, Deque, Dict, Iterable, List, Optional, Set, Union

import anyio

from ..errors import ResultDecodeError
from ..protocol.resp import encode_command
from ..protocol.results import ResultRecord, decode_result_record, result_key
from ..protocol.serialization import DecodeError
from .backoff import Backoff
from .redis import CommandChannel, ConnectionLost, RedisAddress, RedisConnection

__all__ = ("Outcome", "ResultHub", "Watch")

Outcome = Union[ResultRecord, Exception]
_MGET_CHUNK = 1000


class Watch:
    """One caller's interest in some task ids. ``arrived`` lists ids in completion order."""

    __slots__ = ("arrived", "channels", "outcomes", "wake")

    def __init__(self, task_ids: Iterable[str]) -> None:
        self.channels: Dict[str, str] = {result_key(t): t for t in task_ids}
        self.outcomes: Dict[str, Outcome] = {}
        self.arrived: Deque[str] = deque()
        self.wake = anyio.Event()

    def _deliver(self, channel: str, outcome: Outcome) -> None:
        task_id = self.channels.get(channel)
        if task_id is not None and task_id not in self.outcomes:
            self.outcomes[task_id] = outcome
            self.arrived.append(task_id)
            self.wake.set()


def _all_set(events: List[anyio.Event]) -> Callable[[], bool]:
    """A check that all ``events`` are set, resuming where it stopped: O(n) over every call, not O(n) each.

    Checked after every reply while a batch subscribes, so re-scanning all its confirmations each time
    would make a batch quadratic. Events are only ever set, never cleared, so what was set stays set.
    """
    position = 0

    def check() -> bool:
        nonlocal position
        while position < len(events):
            if not events[position].is_set():
                return False
            position += 1
        return True

    return check


class ResultHub:
    """Pub/sub multiplexer for result records of one Redis result backend."""

    def __init__(
        self,
        address: RedisAddress,
        commands: CommandChannel,
        *,
        accept: Iterable[str],
        connect_timeout: float = 5.0,
        reconnect_timeout: float = 30.0,
    ) -> None:
        self._address = address
        self._commands = commands
        self._accept = tuple(accept)
        self._connect_timeout = connect_timeout
        self._reconnect_timeout = reconnect_timeout
        self._conn: Optional[RedisConnection] = None
        self._connect_lock = anyio.Lock()
        self._outbox: List[bytes] = []  # (UN)SUBSCRIBE commands waiting to be sent together
        self._send_pending = False
        self._watchers: Dict[str, Set[Watch]] = {}
        self._acks: Dict[str, Deque[anyio.Event]] = {}  # SUBSCRIBE confirmations expected, in order
        self._confirmed: Dict[str, anyio.Event] = {}  # latest confirmation per watched channel
        self._broken: Optional[RedisConnection] = None  # dropped, closed by the next reconnect
        self._reader: Optional[Watch] = None
        self._idle: Set[Watch] = set()
        self._closed = False

    # ------------------------------------------------------------------ introspection (tests, metrics)
    @property
    def watched_channels(self) -> int:
        """How many result channels are subscribed for current watches."""
        return len(self._watchers)

    @property
    def waiting(self) -> int:
        """How many watches are parked waiting for the reader."""
        return len(self._idle)

    # ------------------------------------------------------------------ public
    @asynccontextmanager
    async def watch(
        self,
        task_ids: Iterable[str],
        *,
        fetch_existing: bool = True,
        while_subscribing: Optional[Callable[[], Awaitable[None]]] = None,
    ) -> AsyncIterator[Watch]:
        """Subscribe to the ids' results for the duration of the block.

        ``fetch_existing``: also look for records written before the subscription took effect (needed
        whenever the task may have been published before this call). ``while_subscribing`` runs after
        the SUBSCRIBE is written and before its confirmation is awaited, so publishing overlaps the
        subscription round trip; the keys are then always fetched once. Raises ``ConnectionLost`` when
        the backend cannot be reached.
        """
        watch = Watch(task_ids)
        for channel in watch.channels:
            self._watchers.setdefault(channel, set()).add(watch)
        try:
            await self._subscribe([c for c in watch.channels if c not in self._confirmed])
            if while_subscribing is not None:
                await while_subscribing()
                fetch_existing = True
            await self._drive(watch, _all_set([self._confirmed[c] for c in watch.channels if c in self._confirmed]))
            if fetch_existing:
                await self._fetch([c for c, t in watch.channels.items() if t not in watch.outcomes])
            yield watch
        finally:
            with anyio.CancelScope(shield=True):
                await self._release(watch)

    async def wait(self, watch: Watch, count: Optional[int] = None) -> None:
        """Return once ``count`` ids (default: all) of ``watch`` have an outcome."""
        need = len(watch.channels) if count is None else min(count, len(watch.channels))
        await self._drive(watch, lambda: len(watch.outcomes) >= need)

    async def aclose(self) -> None:
        """Close the connection and resolve every remaining watch with ``ConnectionLost``."""
        self._closed = True
        self._fail_all(ConnectionLost("the client is closed"))
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.aclose()

    # ------------------------------------------------------------------ connection
    async def _connection(self) -> RedisConnection:
        if self._closed:
            raise ConnectionLost("the client is closed")
        if self._conn is None:
            async with self._connect_lock:
                if self._conn is None:
                    self._conn = await RedisConnection.open(self._address, self._connect_timeout)
        return self._conn

    async def _write(self, data: bytes, *, now: bool = True) -> None:
        """Queue a (UN)SUBSCRIBE and send the queue, coalescing concurrent writers into one send.

        ``now=False`` leaves it queued to ride along with the next write (unsubscribes while other
        watches are active: a late message on an unwatched channel is simply ignored). When other
        watches are active, a writer yields once before sending so the other callers ready in the same
        loop iteration add their commands to the same send.
        """
        self._outbox.append(data)
        if not now or self._send_pending:
            return  # the pending sender will take it along
        if len(self._watchers) > 1:
            self._send_pending = True
            try:
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(0)
            finally:
                self._send_pending = False
        conn = self._conn
        if conn is None or not self._outbox:
            return  # the reconnect re-subscribes everything watched
        data, self._outbox = b"".join(self._outbox), []
        try:
            await conn.send(data)
        except ConnectionLost:
            self._drop(conn)

    def _drop(self, conn: RedisConnection) -> None:
        # The next reader sees no connection and reconnects; the socket is closed there.
        if self._conn is conn:
            self._conn = None
            self._broken = conn

    async def _subscribe(self, channels: List[str]) -> None:
        if not channels:
            return
        await self._connection()
        for channel in channels:
            confirmed = anyio.Event()
            self._acks.setdefault(channel, deque()).append(confirmed)
            self._confirmed[channel] = confirmed
        await self._write(encode_command("SUBSCRIBE", *channels))

    async def _release(self, watch: Watch) -> None:
        gone = []
        for channel in watch.channels:
            watchers = self._watchers.get(channel)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self._watchers[channel]
                    self._confirmed.pop(channel, None)
                    gone.append(channel)
        if not self._watchers:  # dicts and sets never shrink: start small again after a burst
            self._watchers, self._confirmed = {}, {}
            if not self._acks:
                self._acks = {}
            if not self._idle:
                self._idle = set()
        if gone:
            await self._write(encode_command("UNSUBSCRIBE", *gone), now=not self._watchers)
        if self._reader is None and self._idle:
            next(iter(self._idle)).wake.set()

    # ------------------------------------------------------------------ leader / follower reading
    async def _drive(self, watch: Watch, satisfied: Callable[[], bool]) -> None:
        try:
            while not satisfied():
                if self._reader is None:
                    self._reader = watch
                    try:
                        while not satisfied():
                            await self._read_one()
                    finally:
                        self._reader = None
                else:
                    watch.wake = anyio.Event()
                    self._idle.add(watch)
                    try:
                        await watch.wake.wait()
                    finally:
                        self._idle.discard(watch)
        finally:
            if self._reader is None and self._idle:
                next(iter(self._idle)).wake.set()  # hand the reading on

    async def _read_one(self) -> None:
        conn = self._conn
        if conn is None:
            await self._reconnect()
            return
        try:
            reply = await conn.read_reply()
        except ConnectionLost:
            self._drop(conn)
            await self._reconnect()
            return
        self._dispatch(reply)

    def _dispatch(self, reply: object) -> None:
        if not isinstance(reply, list) or len(reply) < 3:
            return
        kind = reply[0]
        channel = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
        if kind == b"message":
            watchers = self._watchers.get(channel)
            if watchers:
                outcome = self._decode(channel, reply[2])
                if outcome is not None:
                    for watch in list(watchers):
                        watch._deliver(channel, outcome)
        elif kind == b"subscribe":
            pending = self._acks.get(channel)
            if pending:
                pending.popleft().set()
                if not pending:
                    del self._acks[channel]
                for watch in self._watchers.get(channel, ()):
                    watch.wake.set()

    def _decode(self, channel: str, raw: object) -> Optional[Outcome]:
        data = raw if isinstance(raw, bytes) else b""
        try:
            record = decode_result_record(data, self._accept)
        except DecodeError as exc:
            return ResultDecodeError(channel[len("celery-task-meta-") :], str(exc), data)
        return record if record.ready else None

    async def _fetch(self, channels: List[str]) -> None:
        for start in range(0, len(channels), _MGET_CHUNK):
            chunk = channels[start : start + _MGET_CHUNK]
            values = await self._commands.execute("MGET", *chunk)
            if not isinstance(values, list):
                raise ConnectionLost(f"MGET failed on {self._address.describe()}: {values!r}")
            for channel, raw in zip(chunk, values):
                if raw is not None:
                    outcome = self._decode(channel, raw)
                    if outcome is not None:
                        for watch in list(self._watchers.get(channel, ())):
                            watch._deliver(channel, outcome)

    async def _reconnect(self) -> None:
        """Reconnect with backoff, re-subscribe every watched channel, then fetch what was missed."""
        async with self._connect_lock:
            broken = self._broken
            if broken is not None:
                self._broken = None
                await broken.aclose()
            if self._conn is not None:  # someone else reconnected meanwhile
                return
            backoff = Backoff()
            deadline = anyio.current_time() + self._reconnect_timeout
            while not self._closed:
                try:
                    conn = await RedisConnection.open(self._address, self._connect_timeout)
                    try:
                        await self._resubscribe(conn)
                        self._conn = conn
                        await self._fetch(list(self._watchers))
                        return
                    except ConnectionLost:
                        await conn.aclose()
                        self._conn = None
                        raise
                except ConnectionLost as exc:
                    if anyio.current_time() + backoff.delay > deadline:
                        self._fail_all(exc)
                        return
                    await backoff.wait()

    async def _resubscribe(self, conn: RedisConnection) -> None:
        channels = list(self._watchers)
        self._outbox = []  # superseded by the re-subscription
        stale, self._acks = self._acks, {}
        if channels:
            await conn.send(encode_command("SUBSCRIBE", *channels))
            remaining = set(channels)
            while remaining:
                reply = await conn.read_reply()
                if isinstance(reply, list) and reply and reply[0] == b"subscribe":
                    remaining.discard(reply[1].decode())
                else:
                    self._dispatch(reply)
        for events in stale.values():  # confirmations still awaited are superseded by the re-subscription
            for event in events:
                event.set()
        for channel in channels:
            self._confirmed.setdefault(channel, anyio.Event()).set()
        for watchers in self._watchers.values():
            for watch in watchers:
                watch.wake.set()

    def _fail_all(self, exc: Exception) -> None:
        for events in self._acks.values():
            for event in events:
                event.set()
        self._acks = {}
        for event in self._confirmed.values():
            event.set()
        for channel, watchers in self._watchers.items():
            for watch in list(watchers):
                watch._deliver(channel, exc)
