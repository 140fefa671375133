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

On a RESP3 connection (``HELLO 3``, Redis >= 6) a watch can carry commands (the LPUSH of its tasks) in
the same write as its SUBSCRIBE: the server runs them in order, so the subscription is in place before
the task exists and neither a confirmation round trip nor a look at the keys is needed. Their replies
(told apart from pub/sub pushes by RESP3) are matched to the watch in the order the commands were sent;
when the connection fails they become ``ConnectionLost`` (``maybe_sent`` says whether they went out).

Timeouts are deadlines handed to :meth:`ResultHub.wait`, not a cancel scope per waiter: only the reader
holds a cancel scope, whose deadline is the earliest of its own and those of the parked waiters (lowered
when an earlier one parks). When it expires the reader wakes the waiters whose time is up and goes on
reading; a waiter woken after its deadline returns without its results.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from itertools import chain
from itertools import count as _counter
from typing import (
    Any,
    Awaitable,
    Callable,
    Coroutine,
    Deque,
    Dict,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
    overload,
)

import anyio
import anyio.lowlevel

from .._io.backoff import Backoff
from .._io.loop import Mutex, Wakeup, current_time, new_wakeup, wake
from .._io.redis import MIN_IO, ConnectionLost, RedisAddress, RedisConnection, keepalive_of
from .._log import logger
from ..config import ConnectionPolicy
from ..errors import ResultDecodeError
from ..protocol.resp import PIECE_SIZE, Push, RespError, encode_command, encode_pipeline
from ..protocol.results import RESULT_KEY_PREFIX, ResultRecord, decode_result_record, result_key
from ..protocol.serialization import DecodeError
from .command_channel import CommandChannel

__all__ = ("HubStatistics", "Outcome", "ResultHub", "Watch")

Outcome = Union[ResultRecord, Exception]
_MGET_CHUNK = 1000
_KEY_PREFIX = RESULT_KEY_PREFIX.encode()


def _pieces(outbox: List[Union[bytes, Iterator[bytes]]]) -> Iterator[bytes]:
    """What to send for ``outbox``: small writes joined into one piece (one system call for many
    callers' commands), a long carried pipeline piece by piece as it is encoded."""
    run: List[bytes] = []
    size = 0
    for entry in outbox:
        for piece in (entry,) if isinstance(entry, bytes) else entry:
            if size + len(piece) > PIECE_SIZE and run:
                yield b"".join(run)
                run, size = [], 0
            run.append(piece)
            size += len(piece)
    if run:
        yield b"".join(run)


class _ResultKeysCommand(Sequence[str]):
    """``<name> <result key>...`` of some task ids, the keys made only as the command is encoded: the
    hub keeps task ids, not result keys (2,000 of them are 200 KB of strings, alive for a whole batch)."""

    __slots__ = ("_name", "_task_ids")

    def __init__(self, name: str, task_ids: Sequence[str]) -> None:
        self._name, self._task_ids = name, task_ids

    def __len__(self) -> int:
        return 1 + len(self._task_ids)

    def __iter__(self) -> Iterator[str]:
        yield self._name
        for task_id in self._task_ids:
            yield result_key(task_id)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> List[str]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[str, List[str]]:
        return list(self)[index]  # not on any path of ours: commands are iterated


def _keys_args(name: str, task_ids: Sequence[str]) -> Sequence[str]:
    """``<name> <result key>...``: a plain tuple for one key (a call's), keys made as encoded for many."""
    return (name, result_key(task_ids[0])) if len(task_ids) == 1 else _ResultKeysCommand(name, task_ids)


def _keys_command(name: str, task_ids: Sequence[str]) -> Union[bytes, Iterator[bytes]]:
    """``<name> <result key>...`` encoded: at once for one key (a call's), as it is sent for many."""
    args = _keys_args(name, task_ids)
    return encode_command(*args) if len(task_ids) == 1 else encode_pipeline((args,))


def _task_id(raw: object) -> Optional[str]:
    """The task id of the result channel a pub/sub reply names; None for any other channel."""
    if isinstance(raw, bytes) and raw.startswith(_KEY_PREFIX):
        return raw[len(_KEY_PREFIX) :].decode(errors="replace")
    return None


class Watch:
    """One caller's interest in some task ids, from :meth:`ResultHub.watch`: ``async with`` it to subscribe
    for the block. ``arrived`` lists ids in completion order (when asked for).

    ``ids`` holds the watched ids (each mapped to itself: the caller's own string, found by an equal
    one). ``outcomes`` maps an id to its outcome, or to what ``keep`` made of it as it arrived.
    ``replies`` holds the replies to the commands carried with the subscription, in order (a
    ``ConnectionLost`` for each command whose connection failed); ``command_failed`` tells whether any
    of them is an error.
    """

    __slots__ = (
        "_entry",
        "_event",
        "_hub",
        "_keep",
        "_need",
        "_or_failed_command",
        "_replies_due",
        "_wake_on_replies",
        "arrived",
        "command_failed",
        "ids",
        "outcomes",
        "replies",
    )

    def __init__(
        self,
        hub: ResultHub,
        task_ids: Iterable[str],
        entry: Tuple[Any, ...],
        *,
        in_order: bool = False,
        keep: Optional[Callable[[str, Outcome], Any]] = None,
    ) -> None:
        self._hub = hub
        self._entry: Optional[Tuple[Any, ...]] = entry  # ResultHub._open's options, until entered
        self.ids: Dict[str, str] = {t: t for t in task_ids}
        self.outcomes: Dict[str, Any] = {}  # Outcome, or what keep returns
        self._keep = keep
        self.arrived: Optional[Deque[str]] = deque() if in_order else None
        self.replies: List[object] = []
        self.command_failed = False
        self._event: Optional[Wakeup] = None  # only a watch that parks needs one
        self._need = 0  # what the current wait needs: this many outcomes, or replies (_has_replies)
        self._or_failed_command = False
        self._replies_due = 0  # replies to carried commands still to come go in self.replies
        self._wake_on_replies = True  # False: wake the watch for them only when a command failed

    # Plain methods returning the hub's coroutines (a watch is its own context manager: no extra object
    # per call, and no coroutine of its own).
    def __aenter__(self) -> Coroutine[Any, Any, Watch]:
        entry, self._entry = self._entry, None
        if entry is None:
            raise RuntimeError("a watch is entered once")
        return self._hub._open(self, *entry)

    def __aexit__(self, *exc_info: object) -> Coroutine[Any, Any, None]:
        return self._hub._release(self)  # shields its own sending

    def _has_outcomes(self) -> bool:
        return len(self.outcomes) >= self._need or (self._or_failed_command and self.command_failed)

    def _has_replies(self) -> bool:
        return len(self.replies) >= self._need

    def wake(self) -> None:
        """Wake the watch if it is parked (a watch that reads for itself looks again anyway)."""
        if self._event is not None:
            wake(self._event)

    def park(self) -> Awaitable[None]:
        """Await it to wait until :meth:`wake` is called."""
        if self._event is None or self._event.done():  # one-shot: a used one is replaced
            self._event = new_wakeup()  # only this watch's task waits on it
        return self._event

    def _reply(self, reply: object) -> None:
        self.replies.append(reply)
        if isinstance(reply, (RespError, ConnectionLost)):
            self.command_failed = True

    def _deliver(self, task_id: str, outcome: Outcome) -> None:
        own = self.ids.get(task_id)  # the watch's own string: a decoded one would be kept twice
        if own is not None and own not in self.outcomes:
            self.outcomes[own] = outcome if self._keep is None else self._keep(own, outcome)
            if self.arrived is not None:
                self.arrived.append(own)
            self.wake()

    def _fail_replies(self, exc: ConnectionLost) -> None:
        """The replies still due will not come: ``exc`` stands in for each."""
        for _ in range(self._replies_due - len(self.replies)):
            self._reply(exc)
        self.wake()


class SubscriptionRefused(ConnectionLost):
    """The server refused a SUBSCRIBE to result channels (an ACL without pub/sub, or without the
    channels): delivered as the outcome of every watch of those tasks."""


class _PubSubCommand:
    """A (UN)SUBSCRIBE written on the hub's connection, until the server has answered it: with one push
    per channel named (``pending`` of them still to come), or with one error reply.

    Every command the hub writes has its entry in the hub's ``_expected`` queue, in write order
    (a ``_PubSubCommand``, the ``Watch`` that carried commands, or None for a DEL): the server
    answers commands in order, so a reply that is not a push belongs to the oldest entry still open.
    """

    __slots__ = ("kind", "pending", "task_ids")

    def __init__(self, kind: bytes, channels: int, task_ids: Sequence[str] = ()) -> None:
        self.kind, self.pending = kind, channels
        self.task_ids = task_ids  # a SUBSCRIBE's: whose watches to fail when it is refused


Expected = Union[Watch, _PubSubCommand, None]


class _Confirmation:
    """A SUBSCRIBE confirmation that arrived or not. Waiting is done on the watches' own wake events
    (the reader wakes a channel's watchers when its confirmation comes), so a plain flag suffices."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def set(self) -> None:
        self.done = True

    def is_set(self) -> bool:
        return self.done


def _all_set(events: List[_Confirmation]) -> Callable[[Watch], bool]:
    """A check that all ``events`` are set, resuming where it stopped: O(n) over every call, not O(n) each.

    Checked after every reply while a batch subscribes, so re-scanning all its confirmations each time
    would make a batch quadratic. Events are only ever set, never cleared, so what was set stays set.
    """
    position = 0

    def check(_watch: Watch) -> bool:
        nonlocal position
        while position < len(events):
            if not events[position].is_set():
                return False
            position += 1
        return True

    return check


_READS_PER_CHECKPOINT = 8
"""Rule: a reader yields to the event loop at least once every this many reads (each read takes all
that has arrived), however fast replies come: other tasks keep running and cancellation is seen."""


class HubStatistics(NamedTuple):
    """A snapshot of a result hub: whether its connection is up, the result channels subscribed, the
    calls waiting on them (``parked_waiters`` of them idle while another reads), commands written or queued
    whose replies are due, and the connections re-established after a loss."""

    connected: bool
    watched_channels: int
    waiting_calls: int
    parked_waiters: int
    queued_commands: int
    reconnects: int


class ResultHub:
    """Pub/sub multiplexer for result records of one Redis result backend."""

    def __init__(
        self,
        address: RedisAddress,
        commands: CommandChannel,
        *,
        accept: Iterable[str],
        policy: Optional[ConnectionPolicy] = None,
        reconnect_timeout: float = 30.0,
    ) -> None:
        self._address = address
        self._commands = commands
        self._accept = tuple(accept)
        policy = policy or ConnectionPolicy()
        self._connect_timeout = policy.connect_timeout
        self._io_timeout = policy.io_timeout
        self._idle_check = policy.idle_check
        self._keepalive = keepalive_of(policy)
        self._reconnect_timeout = reconnect_timeout
        self._conn: Optional[RedisConnection] = None
        self._connect_lock = Mutex()
        # (UN)SUBSCRIBEs and DELs (bytes) and carried commands (encoded as they are sent) waiting to go
        # out together.
        self._outbox: List[Union[bytes, Iterator[bytes]]] = []
        # Whose replies are due, in order: a watch that carried commands, or None for a clean-up DEL.
        self._outbox_expected: List[Expected] = []  # what the commands in the outbox will be answered with
        self._expected: Deque[Expected] = deque()  # and those sent, in order (_PubSubCommand's rule)
        self._connected_once = False
        self._forget: List[str] = []  # tasks whose consumed result keys to DEL with the next write
        self._unsubscribing: List[str] = []  # tasks whose channels to UNSUBSCRIBE at the next write
        self._send_pending = False
        # Keyed by task id, not result key (the keys are made only as commands are encoded). A task's
        # first watch, and any others apart: there is nearly always just one, and a set per task (216
        # bytes for one watch) was a tenth of a 2,000-task batch's peak memory.
        self._watchers: Dict[str, Watch] = {}
        self._also_watching: Dict[str, List[Watch]] = {}
        self._acks: Dict[str, Deque[_Confirmation]] = {}  # SUBSCRIBE confirmations expected, in order
        self._confirmed: Dict[str, _Confirmation] = {}  # latest confirmation per watched task
        self._broken: Optional[RedisConnection] = None  # dropped, closed by the next reconnect
        self._reader: Optional[Watch] = None
        self._read_scope: Optional[anyio.CancelScope] = None  # the reader's: its deadline is the earliest
        self._idle: Set[Watch] = set()
        self._deadlines: List[Tuple[float, int, Watch]] = []  # parked watches' deadlines (a heap; stale ok)
        self._tiebreak = _counter()
        self._reconnect_deadline: Optional[float] = None  # while reconnecting: when to give up
        self._closed = False
        self.reconnects = 0  # connections re-established after a loss (statistics)
        self._lost_at: Optional[float] = None  # when the network took the connection (logged, timed)

    # ------------------------------------------------------------------ introspection (tests, metrics)
    @property
    def watched_channels(self) -> int:
        """How many result channels are subscribed for current watches."""
        return len(self._watchers)

    @property
    def resp3(self) -> Optional[bool]:
        """Whether the connection speaks RESP3 (so watches can carry commands); None while there is none."""
        conn = self._usable_connection()
        return None if conn is None else conn.resp3

    @property
    def waiting(self) -> int:
        """How many watches are parked waiting for the reader."""
        return len(self._idle)

    def statistics(self) -> HubStatistics:
        """What the hub holds now (no I/O): see :class:`HubStatistics`."""
        watches = {id(w) for w in self._watchers.values()}
        watches.update(id(w) for also in self._also_watching.values() for w in also)
        return HubStatistics(
            connected=self._conn is not None,
            watched_channels=len(self._watchers),
            waiting_calls=len(watches),
            parked_waiters=len(self._idle),
            queued_commands=len(self._outbox) + len(self._expected),
            reconnects=self.reconnects,
        )

    # ------------------------------------------------------------------ public
    def watch(
        self,
        task_ids: Iterable[str],
        *,
        fetch_existing: bool = True,
        while_subscribing: Optional[Callable[[], Awaitable[None]]] = None,
        commands: Optional[Sequence[Sequence[object]]] = None,
        await_replies: bool = True,
        in_order: bool = False,
        keep: Optional[Callable[[str, Outcome], Any]] = None,
        deadline: float = math.inf,
    ) -> Watch:
        """Subscribe to the ids' results for the duration of the block.

        ``fetch_existing``: also look for records written before the subscription took effect (needed
        whenever the task may have been published before this call). ``while_subscribing`` runs after
        the SUBSCRIBE is written and before its confirmation is awaited, so publishing overlaps the
        subscription round trip; the keys are then always fetched once. ``commands`` (only when
        :meth:`carries_commands`) go out in the same write, after the SUBSCRIBE; the block starts once
        their replies are in ``watch.replies`` (``await_replies=False``: at once; wait with
        ``wait(..., or_failed_command=True)``, the replies arrive before any result they lead to).
        ``in_order``: keep ``watch.arrived``, the ids in the order their results came. ``keep``: what
        ``watch.outcomes`` holds of an outcome, made as it arrives (default: the outcome itself), so a
        batch holds what it returns, not a decoded record of a kilobyte per task until the last one.
        ``deadline`` (``anyio.current_time()`` clock) bounds what entering waits for (confirmations,
        replies, the fetch): past it the block starts with whatever is in. Raises ``ConnectionLost``
        when the backend cannot be reached.
        """
        return Watch(
            self,
            task_ids,
            (fetch_existing, while_subscribing, commands, await_replies, deadline),
            in_order=in_order,
            keep=keep,
        )

    async def _open(
        self,
        watch: Watch,
        fetch_existing: bool,
        while_subscribing: Optional[Callable[[], Awaitable[None]]],
        commands: Optional[Sequence[Sequence[object]]],
        await_replies: bool,
        deadline: float,
    ) -> Watch:
        for task_id in watch.ids:
            if self._watchers.setdefault(task_id, watch) is not watch:
                self._also_watching.setdefault(task_id, []).append(watch)
        try:
            conn = await self._checked_connection(deadline)
            if commands:
                if not conn.resp3:
                    raise ConnectionLost("this connection cannot carry commands (RESP2)")
                watch._replies_due, watch._wake_on_replies = len(commands), await_replies
                await self._subscribe([t for t in watch.ids if t not in self._confirmed], carry=(commands, watch))
                if await_replies:
                    watch._need = len(commands)
                    await self._drive(watch, Watch._has_replies, deadline)
            else:
                await self._subscribe([t for t in watch.ids if t not in self._confirmed])
                if while_subscribing is not None:
                    await while_subscribing()
                    fetch_existing = True
                await self._drive(
                    watch, _all_set([self._confirmed[t] for t in watch.ids if t in self._confirmed]), deadline
                )
                if while_subscribing is None:  # nothing was done yet that the caller must hear about
                    for outcome in watch.outcomes.values():
                        if isinstance(outcome, SubscriptionRefused):
                            raise outcome
                if fetch_existing and current_time() < deadline:
                    await self._fetch([t for t in watch.ids if t not in watch.outcomes], deadline)
        except BaseException:
            await self._release(watch)
            raise
        return watch

    def forget(self, task_ids: Sequence[str]) -> bool:
        """Queue the DEL of the tasks' result keys to ride with the next write (an UNSUBSCRIBE or a
        SUBSCRIBE, which every watch sends); False, and nothing queued, when the connection cannot
        carry commands."""
        conn = self._conn
        if conn is None or not conn.resp3 or not task_ids:
            return False
        self._forget.extend(task_ids)  # one DEL for all of them, at the end of the next write
        return True

    async def carries_commands(self, deadline: float = math.inf) -> bool:
        """Whether watches can carry commands (connects first, by ``deadline``; a RESP3 connection can)."""
        return (await self._connection(deadline)).resp3

    def wait(
        self, watch: Watch, count: Optional[int] = None, *, or_failed_command: bool = False, deadline: float = math.inf
    ) -> Awaitable[None]:
        """Await it: returns once ``count`` ids (default: all) of ``watch`` have an outcome, or at
        ``deadline`` (``anyio.current_time()`` clock) with whatever arrived by then.

        ``or_failed_command``: or once a command the watch carried failed (then no result will come).
        (A plain method returning the waiting coroutine: one coroutine less per waiter.)
        """
        watch._need = len(watch.ids) if count is None else min(count, len(watch.ids))
        watch._or_failed_command = or_failed_command
        return self._drive(watch, Watch._has_outcomes, deadline)

    def wait_replies(self, watch: Watch, deadline: float = math.inf) -> Awaitable[None]:
        """Await it: returns once every command ``watch`` carried has its reply (or at ``deadline``)."""
        watch._need = watch._replies_due
        return self._drive(watch, Watch._has_replies, deadline)

    def abandon(self) -> None:
        """Close at once, outside any event loop (the loop the hub was used on has ended)."""
        self._closed = True
        self._fail_all(ConnectionLost("the client is closed"))
        for conn in (self._conn, self._broken):
            if conn is not None:
                conn.abandon()
        self._conn = self._broken = None

    async def aclose(self) -> None:
        """Close the connection and resolve every remaining watch with ``ConnectionLost``."""
        self._closed = True
        self._fail_all(ConnectionLost("the client is closed"))
        if self._conn is not None:
            conn, self._conn = self._conn, None
            # Of what is queued, only the DEL of consumed results matters now, best effort: not the
            # (un)subscriptions of a connection about to close, nor carried commands (their callers
            # have just been told they were not sent).
            self._outbox = []
            self._queue_forget()
            if self._outbox:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                    try:
                        await conn.send_pieces(_pieces(self._outbox))
                    except ConnectionLost:
                        pass
                self._outbox = []
            await conn.aclose()

    # ------------------------------------------------------------------ connection
    def _usable_connection(self) -> Optional[RedisConnection]:
        """The connection when it can be used right now (the hot path's check, without an await)."""
        return None if self._closed else self._conn

    async def _checked_connection(self, deadline: float) -> RedisConnection:
        """The connection, looked at first when it was idle: what arrived meanwhile is dispatched, and
        one the server closed meanwhile is replaced before anything is written on it."""
        conn = self._usable_connection()
        if (
            conn is not None
            and self._reader is None  # nobody reads: nobody would notice an EOF
            and time.monotonic() - conn.last_io >= self._idle_check
        ):
            try:
                replies = conn.poll()
            except ConnectionLost:
                self._drop(conn)
            else:
                for reply in replies:
                    self._dispatch(reply, conn.resp3)
        return self._usable_connection() or await self._connection(deadline)

    async def _connection(self, deadline: float = math.inf) -> RedisConnection:
        """The connection, made (or remade, re-subscribing everything watched) by ``deadline`` at the
        latest; ``ConnectionLost`` otherwise."""
        if self._closed:
            raise ConnectionLost("the client is closed")
        if self._conn is None:
            if self._connected_once:  # a lost connection: re-subscribe everything watched, not just ours
                with anyio.CancelScope(deadline=deadline):
                    await self._reconnect()
                if self._conn is None:
                    raise ConnectionLost(f"cannot reconnect to {self._address.describe()}")
            else:
                timeout = min(self._connect_timeout, max(deadline - current_time(), MIN_IO))
                async with self._connect_lock:
                    if self._conn is None:
                        self._conn = await RedisConnection.open(
                            self._address, timeout, resp3=True, keepalive=self._keepalive
                        )
                        self._connected_once = True
        return self._conn

    async def _write(self, data: Union[bytes, Iterator[bytes], None], *expected: Expected) -> None:
        """Queue (UN)SUBSCRIBEs (and carried commands) and send the queue, coalescing concurrent writers.

        Channels released while other watches are active (``_unsubscribing``) are unsubscribed at the
        start of the next write (a late message on an unwatched channel is simply ignored). When other
        watches are active, a writer yields once before sending so the other callers ready in the same
        loop iteration add their commands to the same send. ``expected``: one entry per command in
        ``data`` (see :class:`_PubSubCommand`); ``data`` None sends only what is queued.
        """
        if self._unsubscribing:  # asked for before this write: sent before it (a new SUBSCRIBE may follow)
            gone, self._unsubscribing = self._unsubscribing, []
            self._outbox.append(_keys_command("UNSUBSCRIBE", gone))
            self._outbox_expected.append(_PubSubCommand(b"unsubscribe", len(gone)))
        if data is not None:
            self._outbox.append(data)
            self._outbox_expected += expected
        if self._send_pending:
            return  # the pending sender will take it along
        if len(self._watchers) > 1:
            self._send_pending = True
            try:
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(0)
            except BaseException:  # others' commands wait in the outbox for this send: the reader sends
                if self._read_scope is not None:  # them (_read_one), once woken from its wait
                    self._read_scope.cancel()
                raise
            finally:
                self._send_pending = False
        conn = self._conn
        if conn is None or not self._outbox:
            return  # the reconnect re-subscribes everything watched (and fails carried commands)
        self._queue_forget()
        outbox, self._outbox = self._outbox, []
        # due before the send starts: a reader may see replies before it ends
        self._expected.extend(self._outbox_expected)
        self._outbox_expected = []
        try:
            await conn.send_pieces(_pieces(outbox))
        except ConnectionLost:
            self._drop(conn)
        except BaseException as exc:  # a bug encoding a carried command, KeyboardInterrupt: what the
            if not isinstance(exc, anyio.get_cancelled_exc_class()):  # connection got is unknown
                self._drop(conn)
            raise

    def _queue_forget(self) -> None:
        if self._forget:  # last in the write, so last in the replies expected; encoded as it is sent
            self._outbox.append(encode_pipeline((_ResultKeysCommand("DEL", self._forget),)))
            self._outbox_expected.append(None)
            self._forget = []

    def _lost(self, reason: object) -> None:
        """The network (not a caller's interrupt) took the connection: said once per outage."""
        if self._lost_at is None:
            self._lost_at = current_time()
            logger.warning("result connection to %s lost (%s); reconnecting", self._address.describe(), reason)

    def _drop(self, conn: RedisConnection, *, timed_out: bool = False) -> None:
        # The next reader sees no connection and reconnects; the socket is closed there.
        if timed_out and self._conn is conn:
            self._lost(f"no reply within {self._io_timeout:g}s")
        if self._conn is conn:
            self._conn = None
            self._broken = conn
            if timed_out:
                lost = ConnectionLost(f"{self._address.describe()} did not answer within {self._io_timeout:g}s")
                lost.timed_out = True
            else:
                lost = ConnectionLost(f"lost connection to {self._address.describe()}")
            self._fail_expected(lost)

    def _fail_expected(self, sent: ConnectionLost) -> None:
        """Carried commands will get no reply: maybe executed if they were sent, surely not if queued."""
        sent.maybe_sent = True
        expected, self._expected = self._expected, deque()
        for watch in expected:
            if type(watch) is Watch:
                watch._fail_replies(sent)
        unsent = ConnectionLost(f"{sent}; the commands were not sent")
        queued, self._outbox_expected = self._outbox_expected, []
        for watch in queued:
            if type(watch) is Watch:
                watch._fail_replies(unsent)

    async def _subscribe(
        self, task_ids: List[str], carry: Optional[Tuple[Sequence[Sequence[object]], Watch]] = None
    ) -> None:
        if not task_ids and carry is None:
            return
        if self._usable_connection() is None:
            await self._connection()
        if carry is None:  # carried commands need no confirmation: the server orders them after the SUBSCRIBE
            for task_id in task_ids:
                confirmed = _Confirmation()
                self._acks.setdefault(task_id, deque()).append(confirmed)
                self._confirmed[task_id] = confirmed
        if carry is None:
            subscribe = _PubSubCommand(b"subscribe", len(task_ids), task_ids)
            await self._write(_keys_command("SUBSCRIBE", task_ids), subscribe)
        else:  # encoded as it is sent: a batch's carried LPUSHes are megabytes
            commands, watch = carry
            if task_ids:
                await self._write(
                    encode_pipeline(chain((_keys_args("SUBSCRIBE", task_ids),), commands)),  # type: ignore[arg-type]
                    _PubSubCommand(b"subscribe", len(task_ids), task_ids),
                    watch,
                )
            else:
                await self._write(encode_pipeline(commands), watch)  # type: ignore[arg-type]

    async def _release(self, watch: Watch) -> None:
        gone = []
        for task_id in watch.ids:
            others = self._also_watching.get(task_id)
            if self._watchers.get(task_id) is watch:
                if others:
                    self._watchers[task_id] = others.pop(0)
                else:
                    del self._watchers[task_id]
                    self._confirmed.pop(task_id, None)
                    gone.append(task_id)
            elif others and watch in others:
                others.remove(watch)
            if others is not None and not others:
                del self._also_watching[task_id]
        if not self._watchers:  # dicts and sets never shrink: start small again after a burst
            self._watchers, self._confirmed = {}, {}
            if not self._acks:
                self._acks = {}
            if not self._idle:
                self._idle, self._deadlines = set(), []
        if self._reader is None and self._idle:
            next(iter(self._idle)).wake()
        if gone:
            # One named UNSUBSCRIBE for all the channels released since the last write, not a bare one:
            # the server answers one push per channel named, which is how the hub knows which reply
            # ends the command (_PubSubCommand).
            self._unsubscribing += gone
            if not self._watchers:  # others are active: the UNSUBSCRIBE rides with their next write
                with anyio.CancelScope(shield=True):  # a half-sent command would break the connection
                    await self._write(None)

    # ------------------------------------------------------------------ leader / follower reading
    async def _drive(self, watch: Watch, satisfied: Callable[[Watch], bool], deadline: float = math.inf) -> None:
        # ``satisfied`` is a function of the watch (``Watch._has_outcomes``), not a bound method: one
        # object less per waiter for the cyclic GC to walk.
        try:
            while not satisfied(watch):
                if self._reader is None:
                    self._reader = watch
                    try:
                        await self._lead(watch, satisfied, deadline)
                    finally:
                        self._reader = None
                    if not satisfied(watch):
                        return  # the reader leaves unsatisfied only when its deadline passed
                else:
                    self._idle.add(watch)
                    if deadline != math.inf:
                        self._park_until(watch, deadline)
                    try:
                        await watch.park()
                    finally:
                        self._idle.discard(watch)
                    if deadline != math.inf and not satisfied(watch) and current_time() >= deadline:
                        return  # woken because time is up
        finally:
            if self._reader is None and self._idle:
                next(iter(self._idle)).wake()  # hand the reading on

    async def _lead(self, watch: Watch, satisfied: Callable[[Watch], bool], deadline: float) -> None:
        """Read and dispatch until ``satisfied(watch)`` or ``deadline``, waking parked watches whose time is up."""
        while not satisfied(watch):
            # Rule: a connection with replies due and no I/O for the I/O timeout is dropped, whoever waits.
            io_deadline = self._io_deadline()
            with anyio.CancelScope(deadline=self._earliest_parked(min(deadline, io_deadline))) as scope:
                self._read_scope = scope
                reads = 0
                try:
                    while not satisfied(watch):
                        await self._read_one()  # cancel-safe: what was received stays buffered
                        reads += 1
                        if reads % _READS_PER_CHECKPOINT == 0:  # data that keeps coming never blocks a
                            await anyio.lowlevel.checkpoint()  # read: yield, so others run and cancels land
                finally:
                    self._read_scope = None
            if scope.cancelled_caught:
                now = current_time()
                while self._deadlines and self._deadlines[0][0] <= now:
                    heapq.heappop(self._deadlines)[2].wake()
                conn = self._conn
                if conn is not None and self._expected and now >= self._io_deadline():
                    self._drop(conn, timed_out=True)  # the reconnect re-subscribes and re-fetches
                if deadline <= now:
                    return

    def _io_deadline(self) -> float:
        """When the connection is dropped for silence (the loop's clock): no bytes in or out for the I/O
        timeout while replies are due. Never while nothing is due."""
        conn = self._conn
        if conn is None or not self._expected:
            return math.inf
        return current_time() + self._io_timeout - (time.monotonic() - conn.last_io)

    def _park_until(self, watch: Watch, deadline: float) -> None:
        if len(self._deadlines) > 2 * len(self._idle) + 64:  # mostly stale entries: keep the parked ones
            self._deadlines = [entry for entry in self._deadlines if entry[2] in self._idle]
            heapq.heapify(self._deadlines)
        heapq.heappush(self._deadlines, (deadline, next(self._tiebreak), watch))
        scope = self._read_scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline  # the reader wakes us in time

    def _earliest_parked(self, before: float) -> float:
        """The earliest deadline of a parked watch, if earlier than ``before``; else ``before``."""
        deadlines = self._deadlines
        # Stale entries (watches no longer parked) only matter when they hide an earlier one; the
        # reader is usually the oldest waiter, so it rarely has to look (and _park_until prunes).
        while deadlines and deadlines[0][0] < before and deadlines[0][2] not in self._idle:
            heapq.heappop(deadlines)
        return deadlines[0][0] if deadlines and deadlines[0][0] < before else before

    async def _read_one(self) -> None:
        conn = self._conn
        if conn is None:
            await self._reconnect()
            return
        if self._outbox and not self._send_pending:  # its sender was interrupted: the replies awaited
            await self._write(None)  # may be to what it holds
            return
        try:
            replies = await conn.read_replies()
        except ConnectionLost as exc:
            self._lost(exc)
            self._drop(conn)
            await self._reconnect()
            return
        resp3 = conn.resp3
        try:
            for reply in replies:  # everything that arrived together, before anyone looks again
                self._dispatch(reply, resp3)
        except BaseException:  # replies read and not dispatched are lost: the reconnect re-fetches
            self._drop(conn)
            raise

    def _dispatch(self, reply: object, resp3: bool) -> None:
        if type(reply) is not Push and (resp3 or type(reply) is not list):
            self._command_reply(reply)  # on RESP3 pub/sub traffic comes as pushes; on RESP2 as arrays
            return
        if len(reply) < 3:
            return
        kind = reply[0]
        if kind == b"subscribe" or kind == b"unsubscribe":
            head = self._expected[0] if self._expected else None
            if type(head) is _PubSubCommand and head.kind == kind:
                head.pending -= 1
                if not head.pending:
                    self._expected.popleft()
        if kind != b"message" and kind != b"subscribe":
            return
        task_id = _task_id(reply[1])
        if task_id is None:
            return
        if kind == b"message":
            watches = self._watching(task_id)
            if watches:
                outcome = self._decode(task_id, reply[2])
                if outcome is not None:
                    for watch in watches:
                        watch._deliver(task_id, outcome)
        else:
            pending = self._acks.get(task_id)
            if pending:
                pending.popleft().set()
                if not pending:
                    del self._acks[task_id]
                for watch in self._watching(task_id):
                    watch.wake()

    def _command_reply(self, reply: object) -> None:
        """A reply that is not a push: it answers the oldest command still open (``_PubSubCommand``)."""
        if not self._expected:
            return  # nothing is due (a reply to a command of a dropped connection's time): ignored
        head = self._expected[0]
        if type(head) is Watch:  # a reply to a command the watch carried
            head._reply(reply)
            if len(head.replies) >= head._replies_due:
                self._expected.popleft()
                if head._wake_on_replies or head.command_failed:
                    head.wake()
            return
        self._expected.popleft()  # a DEL's reply, or a (UN)SUBSCRIBE's error (success is pushes)
        if type(head) is _PubSubCommand and head.kind == b"subscribe":
            message = reply.message if isinstance(reply, RespError) else repr(reply)
            self._subscription_refused(
                head.task_ids,
                SubscriptionRefused(
                    f"{self._address.describe()} refused to subscribe to the result channels: {message}"
                ),
            )

    def _subscription_refused(self, task_ids: Sequence[str], error: SubscriptionRefused) -> None:
        """No result will come for ``task_ids`` on this subscription: their watches get ``error``."""
        for task_id in task_ids:
            pending = self._acks.get(task_id)
            if pending:  # the refused SUBSCRIBE is the oldest one still awaited for the id
                pending.popleft().set()
                if not pending:
                    del self._acks[task_id]
            for watch in self._watching(task_id):
                watch._deliver(task_id, error)

    def _watching(self, task_id: str) -> Tuple[Watch, ...]:
        """The watches of ``task_id`` now (a copy: delivering may end some)."""
        first = self._watchers.get(task_id)
        if first is None:
            return ()
        others = self._also_watching.get(task_id)
        return (first, *others) if others else (first,)

    def _decode(self, task_id: str, raw: object) -> Optional[Outcome]:
        data = raw if isinstance(raw, bytes) else b""
        try:
            record = decode_result_record(data, self._accept)
        except DecodeError as exc:
            logger.warning("the result record of task %s cannot be decoded: %s", task_id, exc)
            return ResultDecodeError(task_id, str(exc), data)
        return record if record.ready else None

    async def _fetch(self, task_ids: List[str], deadline: float = math.inf) -> None:
        for start in range(0, len(task_ids), _MGET_CHUNK):
            chunk = task_ids[start : start + _MGET_CHUNK]
            keys = [result_key(t) for t in chunk]
            try:
                values = await self._commands.execute("MGET", *keys, deadline=deadline)
            except ConnectionLost:  # a read is safe to send again: once, on a new connection (the flush it
                values = await self._commands.execute("MGET", *keys, deadline=deadline)  # rode in may be cut)
            if not isinstance(values, list):
                raise ConnectionLost(f"MGET failed on {self._address.describe()}: {values!r}")
            for task_id, raw in zip(chunk, values):
                if raw is not None:
                    outcome = self._decode(task_id, raw)
                    if outcome is not None:
                        for watch in self._watching(task_id):
                            watch._deliver(task_id, outcome)

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
            if self._reconnect_deadline is None:  # kept when a reader is interrupted: one budget per outage
                self._reconnect_deadline = current_time() + self._reconnect_timeout
            deadline = self._reconnect_deadline
            attempts = 0
            while not self._closed:
                attempts += 1
                try:
                    conn = await RedisConnection.open(
                        self._address, self._connect_timeout, resp3=True, keepalive=self._keepalive
                    )
                    try:
                        await self._resubscribe(conn)
                        self._conn = conn
                        self._reconnect_deadline = None
                        self.reconnects += 1
                        if self._lost_at is not None:
                            logger.warning(
                                "result connection to %s back after %d attempt(s) in %.2fs (last backoff %.2fs);"
                                " re-subscribed %d channel(s) for %d waiting call(s)",
                                self._address.describe(),
                                attempts,
                                current_time() - self._lost_at,
                                backoff.last,
                                len(self._watchers),
                                self.statistics().waiting_calls,
                            )
                            self._lost_at = None
                        await self._fetch(list(self._watchers))
                        return
                    except BaseException:  # interrupted with confirmations due: never used again
                        await conn.aclose()
                        if self._conn is conn:
                            self._conn = None
                        raise
                except ConnectionLost as exc:
                    self._lost(exc)
                    if current_time() + backoff.delay > deadline:
                        self._reconnect_deadline = None
                        logger.warning(
                            "gave up reconnecting to %s after %d attempt(s): %s; %d waiting call(s) failed",
                            self._address.describe(),
                            attempts,
                            exc,
                            self.statistics().waiting_calls,
                        )
                        self._lost_at = None
                        self._fail_all(exc)
                        return
                    await backoff.wait()

    async def _resubscribe(self, conn: RedisConnection) -> None:
        task_ids = list(self._watchers)
        self._outbox = []  # superseded by the re-subscription; carried commands in it were never sent
        self._unsubscribing = []  # a new connection is subscribed to nothing else
        self._fail_expected(ConnectionLost(f"lost connection to {self._address.describe()}"))
        stale, self._acks = self._acks, {}
        if task_ids:
            await conn.send_pieces(encode_pipeline((_ResultKeysCommand("SUBSCRIBE", task_ids),)))
            remaining = set(task_ids)
            while remaining:
                reply = await conn.read_reply()
                if isinstance(reply, RespError):  # a SUBSCRIBE is refused whole (an ACL)
                    self._subscription_refused(
                        task_ids,
                        SubscriptionRefused(
                            f"{self._address.describe()} refused to subscribe to the result channels: {reply.message}"
                        ),
                    )
                    break
                if isinstance(reply, list) and len(reply) > 1 and reply[0] == b"subscribe":
                    task_id = _task_id(reply[1])
                    if task_id is not None:
                        remaining.discard(task_id)
                else:
                    self._dispatch(reply, conn.resp3)
        for events in stale.values():  # confirmations still awaited are superseded by the re-subscription
            for event in events:
                event.set()
        for task_id in task_ids:
            self._confirmed.setdefault(task_id, _Confirmation()).set()
        for task_id in task_ids:
            for watch in self._watching(task_id):
                watch.wake()

    def _fail_all(self, exc: ConnectionLost) -> None:
        self._fail_expected(ConnectionLost(str(exc)))
        for events in self._acks.values():
            for event in events:
                event.set()
        self._acks = {}
        for event in self._confirmed.values():
            event.set()
        for task_id in list(self._watchers):
            for watch in self._watching(task_id):
                watch._deliver(task_id, exc)
