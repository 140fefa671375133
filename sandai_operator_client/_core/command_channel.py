"""CommandChannel: many callers, one Redis connection, one pipeline per flush (group commit)."""

from __future__ import annotations

import math
import time
from typing import Awaitable, List, Optional, Sequence

import anyio

from .._io.loop import current_time
from .._io.redis import MIN_IO, ConnectionLost, RedisAddress, RedisConnection, interrupted, keepalive_of
from ..config import ConnectionPolicy
from ..protocol.resp import Arg, Command
from .group_commit import GroupCommit

__all__ = ("CommandChannel",)


class CommandChannel:
    """Many callers, one Redis connection, one pipeline per flush (group commit)."""

    DEFER_LIMIT = 64

    def __init__(self, address: RedisAddress, policy: Optional[ConnectionPolicy] = None) -> None:
        self.address = address
        policy = policy or ConnectionPolicy()
        self._connect_timeout = policy.connect_timeout
        self._io_timeout = policy.io_timeout
        self._idle_check = policy.idle_check
        self._keepalive = keepalive_of(policy)
        self._latest_deadline = -math.inf  # the latest deadline of the callers of the next flush
        self._conn: Optional[RedisConnection] = None
        self._deferred: List[Command] = []
        self._pipeline: GroupCommit[Command, object] = GroupCommit(self._flush, interrupted)
        self._abandoned: Optional[RedisConnection] = None  # interrupted with replies due: closed, never reused
        self._closed = False

    def defer(self, *args: Arg) -> None:
        """Queue a command whose reply nobody waits for; it rides along with the next pipeline.

        Used for clean-up (``DEL`` of consumed result keys) so it costs no round trip of its own. At
        most ``DEFER_LIMIT`` wait: the caller then sends them (``flush_deferred``), so a burst of calls
        followed by silence leaves little behind.
        """
        self._deferred.append(args)

    @property
    def connected(self) -> bool:
        """A connection is open (not known to be broken)."""
        return self._conn is not None and not self._closed

    @property
    def busy(self) -> bool:
        """A pipeline is going out (or handed on to a queued caller)."""
        return self._pipeline.busy

    @property
    def deferred_backlog(self) -> int:
        """Deferred commands not sent yet."""
        return len(self._deferred)

    async def flush_deferred(self) -> None:
        """Send the deferred commands now (best effort: a failure leaves keys to their TTL)."""
        if self._deferred and not self._closed:
            try:
                await self.execute_many([])
            except ConnectionLost:
                pass

    async def execute(self, *args: Arg, deadline: float = math.inf) -> object:
        """Run one command; error replies come back as :class:`RespError` values."""
        return (await self.execute_many([args], deadline))[0]

    def execute_many(self, commands: Sequence[Command], deadline: float = math.inf) -> Awaitable[List[object]]:
        """Await it: runs commands back to back in one pipeline, coalesced with other callers' commands.

        Raises ``ConnectionLost`` when the server cannot be reached or stops answering: within the I/O
        timeout, or by ``deadline`` (the event loop's clock) when every caller of the pipeline has one
        that is earlier (never sooner than ``MIN_IO`` seconds: a slow but healthy server is not cut
        off). A plain method returning the group commit's coroutine: a waiting caller is one coroutine.
        """
        if self._closed:
            raise ConnectionLost("the client is closed")
        if deadline > self._latest_deadline:
            self._latest_deadline = deadline
        return self._pipeline.submit(commands)

    async def _flush(self, batches: List[Sequence[Command]]) -> List[object]:
        # Rule: a connection is never used again with replies still due. Whatever interrupts a pipeline
        # between its first byte written and its last reply read (an error, KeyboardInterrupt, a bug)
        # drops the connection; otherwise the next caller would read this pipeline's replies as its own.
        deferred, self._deferred = self._deferred, []
        sending = False
        await self._close_abandoned()
        now = current_time()
        latest, self._latest_deadline = self._latest_deadline, -math.inf
        limit = min(self._io_timeout, max(latest - now, MIN_IO))
        if (
            self._conn is not None
            and time.monotonic() - self._conn.last_io >= self._idle_check
            and not self._alive(self._conn)
        ):
            await self._conn.aclose()  # closed by the server while idle: nothing was written, reconnect
            self._conn = None
        try:
            # Shielded: a pipeline cut short by a cancellation would leave unread replies on the connection.
            with anyio.CancelScope(deadline=now + limit, shield=True):
                if self._conn is None:
                    self._conn = await RedisConnection.open(
                        self.address, self._connect_timeout, keepalive=self._keepalive
                    )
                sending = True
                replies = await self._conn.request(deferred, *batches)
                return replies[len(deferred) :]
            error = ConnectionLost(f"{self.address.describe()} did not answer within {limit:g}s")
            error.timed_out = True
        except ConnectionLost as exc:
            error = exc
        except Exception as exc:  # a bug must not leave callers waiting on a wedged connection
            error = ConnectionLost(f"unexpected failure talking to {self.address.describe()}: {exc!r}")
        except BaseException:  # KeyboardInterrupt and the like: no await here, the next flush closes it
            self._abandoned, self._conn = self._conn, None
            raise
        if self._conn is not None:
            await self._conn.aclose()
            self._conn = None
        error.maybe_sent = sending
        raise error

    def abandon(self) -> None:
        """Close at once, outside any event loop (the loop the connection was used on has ended): nothing
        deferred is sent; later calls raise ``ConnectionLost``."""
        self._closed = True
        for conn in (self._conn, self._abandoned):
            if conn is not None:
                conn.abandon()
        self._conn = self._abandoned = None

    async def _close_abandoned(self) -> None:
        """Close the connection an interrupt left with replies due (never used again)."""
        if self._abandoned is not None:
            abandoned, self._abandoned = self._abandoned, None
            await abandoned.aclose()

    @staticmethod
    def _alive(conn: RedisConnection) -> bool:
        """An idle command connection is alive when the server neither closed it nor sent anything
        (nothing is due: an unasked reply is the error a server sends before closing, say max clients)."""
        try:
            return not conn.poll()
        except ConnectionLost:
            return False

    async def aclose(self) -> None:
        """Send deferred commands (best effort), close the connection; later calls raise ``ConnectionLost``."""
        if self._conn is not None and not self._pipeline.busy:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                await self.flush_deferred()
        self._closed = True
        await self._close_abandoned()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.aclose()
