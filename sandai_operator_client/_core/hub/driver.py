"""ResultHub: one pub/sub connection serves every waiter of a client (DESIGN.md section 3).

The bookkeeping is ``state.HubState`` (sans-IO), the connection ``link.ResultLink``; here, the reading:

* A watch SUBSCRIBEs its result channels (one command for many ids) and waits for the confirmation;
  when the task may already have finished it then MGETs the keys once; then it waits for the PUBLISH.
  On a RESP3 connection a watch may carry commands (its tasks' LPUSH) in the SUBSCRIBE's write: the
  server runs them after it, so no confirmation and no look at the keys are needed.
* Leader/follower reading, no background task: the first waiter that finds nobody reading reads and
  dispatches for all; when its own wait is over (or it is cancelled) it wakes a parked waiter to take
  over. Bytes read stay buffered in the connection, so a reader cancelled mid-read loses nothing.
* Deadlines, not a cancel scope per waiter: only the reader holds one, at the earliest of its own, the
  parked waiters' and the silence limit; then it wakes those whose time is up, drops a silent connection.
"""

from __future__ import annotations

import heapq
import math
from itertools import count
from typing import Any, Awaitable, Callable, Iterable, List, NamedTuple, Optional, Sequence, Set

import anyio
import anyio.lowlevel

from ..._io.errors import ConnectionLost
from ..._io.loop import current_time, new_wakeup
from ..._io.redis import RedisAddress, RedisConnection
from ...config import ConnectionPolicy
from ...protocol.resp import Command
from ...protocol.results import result_key
from ..command_channel import CommandChannel
from .commands import write_pieces
from .link import ResultLink
from .state import HubState
from .watch import Outcome, SubscriptionRefused, Watch, WatchOptions, all_set

__all__ = ("HubStatistics", "ResultHub")

MGET_CHUNK = 1000
"""Keys per MGET when looking for records already written."""

READS_PER_CHECKPOINT = 8
"""Rule: a reader yields to the event loop at least once every this many reads (each read takes all
that has arrived), however fast replies come: other tasks keep running and cancellation is seen."""


class HubStatistics(NamedTuple):
    """A snapshot of a result hub: whether its connection is up, the result channels subscribed, the
    calls waiting on them (``parked_waiters`` of them idle while another reads), commands written or
    queued whose replies are due (``unsent_writes``: writes queued, not sent yet), and the connections
    re-established after a loss."""

    connected: bool
    watched_channels: int
    waiting_calls: int
    parked_waiters: int
    queued_commands: int
    unsent_writes: int
    reconnects: int


class _Parked(NamedTuple):
    """A parked watch's deadline, in the reader's heap (stale once the watch is no longer parked)."""

    deadline: float
    order: int
    watch: Watch


def _park(watch: Watch) -> Awaitable[None]:
    """Await it to wait until ``watch.wake()`` (a one-shot wake-up: a used one is replaced)."""
    event = watch.event
    if event is None or event.done():
        event = watch.event = new_wakeup()  # only this watch's task waits on it
    return event


class ResultHub:
    """Pub/sub multiplexer for the result records of one Redis result backend."""

    def __init__(
        self,
        address: RedisAddress,
        commands: CommandChannel,
        *,
        accept: Iterable[str],
        policy: Optional[ConnectionPolicy] = None,
        reconnect_timeout: float = 30.0,
    ) -> None:
        self._commands = commands  # for MGET: a pub/sub connection runs no other reads
        self._state = HubState(address.describe(), accept)
        self._link = ResultLink(address, self._state, policy or ConnectionPolicy(), reconnect_timeout, self._fetch)
        self._send_pending = False  # a writer yields once before sending: others' commands join its write
        self._reader: Optional[Watch] = None
        self._read_scope: Optional[anyio.CancelScope] = None
        self._idle: Set[Watch] = set()
        self._deadlines: List[_Parked] = []  # a heap; stale entries allowed
        self._order = count()

    # ------------------------------------------------------------------ introspection
    @property
    def resp3(self) -> Optional[bool]:
        """Whether the connection speaks RESP3 (so watches can carry commands); None while there is none."""
        conn = self._link.usable()
        return None if conn is None else conn.resp3

    def statistics(self) -> HubStatistics:
        """What the hub holds now (no I/O): see :class:`HubStatistics`."""
        state = self._state
        return HubStatistics(
            connected=self._link.conn is not None,
            watched_channels=len(state.watchers),
            waiting_calls=state.watch_count(),
            parked_waiters=len(self._idle),
            queued_commands=len(state.outbox) + len(state.sent),
            unsent_writes=len(state.outbox),
            reconnects=self._link.reconnects,
        )

    # ------------------------------------------------------------------ watches
    def watch(
        self,
        task_ids: Iterable[str],
        *,
        fetch_existing: bool = True,
        while_subscribing: Optional[Callable[[], Awaitable[None]]] = None,
        commands: Optional[Sequence[Command]] = None,
        await_replies: bool = True,
        in_order: bool = False,
        keep: Optional[Callable[[str, Outcome], Any]] = None,
        deadline: float = math.inf,
    ) -> Watch:
        """Subscribe to the ids' results for the duration of the block.

        ``fetch_existing``: also look for records written before the subscription took effect.
        ``while_subscribing`` runs once the SUBSCRIBE is written, before its confirmation is awaited
        (publishing overlaps the round trip; the keys are then always fetched). ``commands`` (only when
        :meth:`carries_commands`) go out in the same write, after the SUBSCRIBE; the block starts once their
        replies are in ``watch.replies`` (``await_replies=False``: at once; ``wait(...,
        or_failed_command=True)`` then, the replies precede any result they lead to). ``in_order``: keep
        ``watch.arrived``, the ids in completion order. ``keep``: what ``watch.outcomes`` holds of an outcome,
        made as it arrives (default: the outcome). ``deadline`` (``anyio.current_time()`` clock) bounds what
        entering waits for. Raises ``ConnectionLost`` when the backend cannot be reached.
        """
        options = WatchOptions(fetch_existing, while_subscribing, commands, await_replies, deadline)
        return Watch(self, task_ids, options, in_order=in_order, keep=keep)

    async def open_watch(self, watch: Watch, options: WatchOptions) -> Watch:
        """``async with watch``: subscribe (carrying commands, or overlapping ``while_subscribing``)."""
        self._state.register(watch)
        try:
            if options.commands:
                await self._open_carrying(watch, options.commands, options.await_replies, options.deadline)
            else:
                await self._open_subscribed(watch, options)
        except BaseException:
            await self.release_watch(watch)
            raise
        return watch

    async def _open_carrying(
        self, watch: Watch, commands: Sequence[Command], await_replies: bool, deadline: float
    ) -> None:
        conn = await self._checked_connection(deadline)
        if not conn.resp3:
            raise ConnectionLost("this connection cannot carry commands (RESP2)")
        watch.replies_due, watch.wake_on_replies = len(commands), await_replies
        self._state.carry(self._state.unconfirmed(watch.ids), commands, watch)
        await self._write()
        if await_replies:
            watch.need = len(commands)
            await self._drive(watch, Watch.has_replies, deadline)

    async def _open_subscribed(self, watch: Watch, options: WatchOptions) -> None:
        deadline = options.deadline
        await self._checked_connection(deadline)
        task_ids = self._state.unconfirmed(watch.ids)
        if task_ids:
            self._state.subscribe(task_ids)
            await self._write()
        if options.while_subscribing is not None:
            await options.while_subscribing()
        await self._drive(watch, all_set(self._state.confirmations(watch.ids)), deadline)
        if options.while_subscribing is None:  # nothing was done yet that the caller must hear about
            for outcome in watch.outcomes.values():
                if isinstance(outcome, SubscriptionRefused):
                    raise outcome
        fetch = options.fetch_existing or options.while_subscribing is not None
        if fetch and current_time() < deadline:
            await self._fetch([t for t in watch.ids if t not in watch.outcomes], deadline)

    async def release_watch(self, watch: Watch) -> None:
        """Leave ``watch``: channels nobody watches now are UNSUBSCRIBEd (with others' next write, or now)."""
        released = self._state.release(watch)
        if not self._state.watchers and not self._idle:
            self._idle, self._deadlines = set(), []  # sets never shrink: start small again after a burst
        if self._reader is None and self._idle:
            next(iter(self._idle)).wake()  # hand the reading on
        if released and not self._state.watchers:  # others are active: it rides with their next write
            with anyio.CancelScope(shield=True):  # a half-sent command would break the connection
                await self._write()

    def forget(self, task_ids: Sequence[str]) -> bool:
        """Queue the DEL of the tasks' result keys to ride with the next write (an UNSUBSCRIBE or a
        SUBSCRIBE, which every watch sends); False, and nothing queued, when the connection cannot
        carry commands."""
        conn = self._link.conn
        if conn is None or not conn.resp3 or not task_ids:
            return False
        self._state.forget(task_ids)
        return True

    async def carries_commands(self, deadline: float = math.inf) -> bool:
        """Whether watches can carry commands (connects first, by ``deadline``; a RESP3 connection can)."""
        return (await self._link.get(deadline)).resp3

    def wait(
        self, watch: Watch, count: Optional[int] = None, *, or_failed_command: bool = False, deadline: float = math.inf
    ) -> Awaitable[None]:
        """Await it: returns once ``count`` ids (default: all) of ``watch`` have an outcome, or at
        ``deadline`` (``anyio.current_time()`` clock) with whatever arrived by then.

        ``or_failed_command``: or once a command the watch carried failed (then no result will come).
        """
        watch.need = len(watch.ids) if count is None else min(count, len(watch.ids))
        watch.or_failed_command = or_failed_command
        return self._drive(watch, Watch.has_outcomes, deadline)

    def wait_replies(self, watch: Watch, deadline: float = math.inf) -> Awaitable[None]:
        """Await it: returns once every command ``watch`` carried has its reply (or at ``deadline``)."""
        watch.need = watch.replies_due
        return self._drive(watch, Watch.has_replies, deadline)

    def abandon(self) -> None:
        """Close at once, outside any event loop (the loop the hub was used on has ended)."""
        self._link.closed = True
        self._state.fail_all(ConnectionLost("the client is closed"))
        self._link.abandon()

    async def aclose(self) -> None:
        """Close the connection and resolve every remaining watch with ``ConnectionLost``."""
        self._link.closed = True
        await self._link.aclose(self._state.close(ConnectionLost("the client is closed")))

    # ------------------------------------------------------------------ writing
    async def _checked_connection(self, deadline: float) -> RedisConnection:
        """The connection, looked at first when it was idle and nobody reads: what arrived meanwhile is
        dispatched, and one the server closed meanwhile is replaced before anything is written on it."""
        conn = self._link.usable()
        if conn is not None and self._reader is None and self._link.idle(conn):
            try:
                replies = conn.poll()
            except ConnectionLost:
                self._link.drop(conn)
            else:
                for reply in replies:
                    self._state.receive(reply, conn.resp3)
        return self._link.usable() or await self._link.get(deadline)

    async def _write(self) -> None:
        """Send what the state has queued, coalescing concurrent writers: when other watches are active,
        a writer yields once first, so the callers ready in the same loop iteration share its write."""
        state = self._state
        state.queue(None)  # the UNSUBSCRIBEs asked for before this write go first
        if self._send_pending:
            return  # the pending sender takes it along
        if len(state.watchers) > 1:
            self._send_pending = True
            try:
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(0)
            except BaseException:  # others' commands wait in the outbox: the reader sends them
                if self._read_scope is not None:  # (_read_one), once woken from its wait
                    self._read_scope.cancel()
                raise
            finally:
                self._send_pending = False
        conn = self._link.conn
        if conn is None or not state.outbox:
            return  # the reconnect re-subscribes everything watched (and fails carried commands)
        writes = state.take_write()  # due before the send starts: a reader may see replies before it ends
        try:
            await conn.send_pieces(write_pieces(writes))
        except ConnectionLost:
            self._link.drop(conn)
        except BaseException as exc:  # a bug encoding a carried command, KeyboardInterrupt: what the
            if not isinstance(exc, anyio.get_cancelled_exc_class()):  # connection got is unknown
                self._link.drop(conn)
            raise

    # ------------------------------------------------------------------ leader / follower reading
    async def _drive(self, watch: Watch, satisfied: Callable[[Watch], bool], deadline: float = math.inf) -> None:
        """Until ``satisfied(watch)`` or ``deadline``: read for everyone, or park while another reads."""
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
                        await _park(watch)
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
            with anyio.CancelScope(deadline=self._earliest_parked(min(deadline, self._link.silent_until()))) as scope:
                self._read_scope = scope
                reads = 0
                try:
                    while not satisfied(watch):
                        await self._read_one()  # cancel-safe: what was received stays buffered
                        reads += 1
                        if reads % READS_PER_CHECKPOINT == 0:
                            await anyio.lowlevel.checkpoint()
                finally:
                    self._read_scope = None
            if scope.cancelled_caught:
                now = current_time()
                while self._deadlines and self._deadlines[0].deadline <= now:
                    heapq.heappop(self._deadlines).watch.wake()
                conn = self._link.conn
                if conn is not None and self._state.sent and now >= self._link.silent_until():
                    self._link.drop(conn, timed_out=True)  # the reconnect re-subscribes and re-fetches
                if deadline <= now:
                    return

    def _park_until(self, watch: Watch, deadline: float) -> None:
        if len(self._deadlines) > 2 * len(self._idle) + 64:  # mostly stale entries: keep the parked ones
            self._deadlines = [entry for entry in self._deadlines if entry.watch in self._idle]
            heapq.heapify(self._deadlines)
        heapq.heappush(self._deadlines, _Parked(deadline, next(self._order), watch))
        scope = self._read_scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline  # the reader wakes us in time

    def _earliest_parked(self, before: float) -> float:
        """The earliest deadline of a parked watch, if earlier than ``before``; else ``before``."""
        deadlines = self._deadlines
        # Stale entries only matter when they hide an earlier one; _park_until prunes the rest.
        while deadlines and deadlines[0].deadline < before and deadlines[0].watch not in self._idle:
            heapq.heappop(deadlines)
        return deadlines[0].deadline if deadlines and deadlines[0].deadline < before else before

    async def _read_one(self) -> None:
        conn = self._link.conn
        if conn is None:
            await self._link.reconnect()
            return
        if self._state.outbox and not self._send_pending:  # its sender was interrupted: the replies
            await self._write()  # awaited may be to what it holds
            return
        try:
            replies = await conn.read_replies()
        except ConnectionLost as exc:
            self._link.lost(exc)
            self._link.drop(conn)
            await self._link.reconnect()
            return
        try:
            for reply in replies:  # everything that arrived together, before anyone looks again
                self._state.receive(reply, conn.resp3)
        except BaseException:  # replies read and not dispatched are lost: the reconnect re-fetches
            self._link.drop(conn)
            raise

    async def _fetch(self, task_ids: List[str], deadline: float = math.inf) -> None:
        """Look for the records of ``task_ids`` already written (MGET on the command channel)."""
        for start in range(0, len(task_ids), MGET_CHUNK):
            chunk = task_ids[start : start + MGET_CHUNK]
            keys = [result_key(t) for t in chunk]
            try:
                values = await self._commands.execute("MGET", *keys, deadline=deadline)
            except ConnectionLost:  # a read is safe to send again: once, on a new connection (the flush it
                values = await self._commands.execute("MGET", *keys, deadline=deadline)  # rode in may be cut)
            if not isinstance(values, list):
                raise ConnectionLost(f"MGET failed on {self._link.address.describe()}: {values!r}")
            for task_id, raw in zip(chunk, values):
                self._state.fetched(task_id, raw)
