"""The result hub's one connection: made on first use, looked at when it was idle, dropped when it fails
or falls silent, remade with backoff, re-subscribing everything watched, until the reconnect budget of
the outage is spent (then every watch fails)."""

from __future__ import annotations

import math
import time
from typing import Awaitable, Callable, List, Optional

import anyio

from ..._io.backoff import Backoff
from ..._io.errors import ConnectionLost
from ..._io.loop import Mutex, current_time
from ..._io.redis import MIN_IO, RedisAddress, RedisConnection, keepalive_of
from ..._log import logger
from ...config import ConnectionPolicy
from .commands import Write, write_pieces
from .state import HubState

__all__ = ("ResultLink",)


class ResultLink:
    """The hub's connection. ``conn`` is None while there is none (a reader then reconnects)."""

    def __init__(
        self,
        address: RedisAddress,
        state: HubState,
        policy: ConnectionPolicy,
        reconnect_timeout: float,
        fetch: Callable[[List[str]], Awaitable[None]],
    ) -> None:
        self.address = address
        self._state = state
        self._fetch = fetch  # re-fetches the watched ids' records after a reconnect
        self._connect_timeout = policy.connect_timeout
        self.io_timeout = policy.io_timeout
        self.idle_check = policy.idle_check
        self._keepalive = keepalive_of(policy)
        self._reconnect_timeout = reconnect_timeout
        self.conn: Optional[RedisConnection] = None
        self._broken: Optional[RedisConnection] = None  # dropped, closed by the next reconnect
        self._lock = Mutex()
        self._connected_once = False
        self._reconnect_deadline: Optional[float] = None  # one budget per outage, kept across readers
        self._lost_at: Optional[float] = None  # when the network took the connection (logged, timed)
        self.closed = False
        self.reconnects = 0  # connections re-established after a loss

    def usable(self) -> Optional[RedisConnection]:
        """The connection when it can be used right now (no await)."""
        return None if self.closed else self.conn

    def idle(self, conn: RedisConnection) -> bool:
        """No bytes went either way on ``conn`` for the idle-check interval."""
        return time.monotonic() - conn.last_io >= self.idle_check

    def silent_until(self) -> float:
        """When the connection is dropped for silence (the loop's clock): no bytes in or out for the I/O
        timeout while replies are due. Never while nothing is due."""
        conn = self.conn
        if conn is None or not self._state.sent:
            return math.inf
        return current_time() + self.io_timeout - (time.monotonic() - conn.last_io)

    async def get(self, deadline: float = math.inf) -> RedisConnection:
        """The connection, made (or remade, re-subscribing everything watched) by ``deadline`` at the
        latest; ``ConnectionLost`` otherwise."""
        if self.closed:
            raise ConnectionLost("the client is closed")
        if self.conn is None:
            if self._connected_once:  # a lost connection: re-subscribe everything watched, not just ours
                with anyio.CancelScope(deadline=deadline):
                    await self.reconnect()
                if self.conn is None:
                    raise ConnectionLost(f"cannot reconnect to {self.address.describe()}")
            else:
                timeout = min(self._connect_timeout, max(deadline - current_time(), MIN_IO))
                async with self._lock:
                    if self.conn is None:
                        self.conn = await RedisConnection.open(
                            self.address, timeout, resp3=True, keepalive=self._keepalive
                        )
                        self._connected_once = True
        return self.conn

    def lost(self, reason: object) -> None:
        """The network (not a caller's interrupt) took the connection: said once per outage."""
        if self._lost_at is None:
            self._lost_at = current_time()
            logger.warning("result connection to %s lost (%s); reconnecting", self.address.describe(), reason)

    def drop(self, conn: RedisConnection, *, timed_out: bool = False) -> None:
        """``conn`` is not used again: the next reader reconnects (and closes it)."""
        if self.conn is not conn:
            return
        if timed_out:
            self.lost(f"no reply within {self.io_timeout:g}s")
            lost = ConnectionLost(f"{self.address.describe()} did not answer within {self.io_timeout:g}s")
            lost.timed_out = True
        else:
            lost = ConnectionLost(f"lost connection to {self.address.describe()}")
        self.conn, self._broken = None, conn
        self._state.lost(lost)

    async def reconnect(self) -> None:
        """Reconnect with backoff, re-subscribe every watched channel, then fetch what was missed."""
        async with self._lock:
            broken, self._broken = self._broken, None
            if broken is not None:
                await broken.aclose()
            if self.conn is not None:  # someone else reconnected meanwhile
                return
            backoff = Backoff()
            if self._reconnect_deadline is None:
                self._reconnect_deadline = current_time() + self._reconnect_timeout
            attempts = 0
            while not self.closed:
                attempts += 1
                try:
                    await self._reopen(attempts, backoff)
                    return
                except ConnectionLost as exc:
                    self.lost(exc)
                    if current_time() + backoff.delay > self._reconnect_deadline:
                        self._give_up(attempts, exc)
                        return
                    await backoff.wait()

    async def _reopen(self, attempts: int, backoff: Backoff) -> None:
        conn = await RedisConnection.open(self.address, self._connect_timeout, resp3=True, keepalive=self._keepalive)
        try:
            await self._resubscribe(conn)
            self.conn = conn
            self._reconnect_deadline = None
            self.reconnects += 1
            if self._lost_at is not None:
                logger.warning(
                    "result connection to %s back after %d attempt(s) in %.2fs (last backoff %.2fs);"
                    " re-subscribed %d channel(s) for %d waiting call(s)",
                    self.address.describe(),
                    attempts,
                    current_time() - self._lost_at,
                    backoff.last,
                    len(self._state.watchers),
                    self._state.watch_count(),
                )
                self._lost_at = None
            await self._fetch(list(self._state.watchers))
        except BaseException:  # interrupted with confirmations due: never used again
            await conn.aclose()
            if self.conn is conn:
                self.conn = None
            raise

    async def _resubscribe(self, conn: RedisConnection) -> None:
        resubscription = self._state.resubscription()
        await conn.send_pieces(resubscription.command)
        while resubscription.remaining:
            self._state.resubscribe_reply(resubscription, await conn.read_reply(), conn.resp3)
        self._state.resubscribed(resubscription)

    def _give_up(self, attempts: int, exc: ConnectionLost) -> None:
        self._reconnect_deadline = None
        logger.warning(
            "gave up reconnecting to %s after %d attempt(s): %s; %d waiting call(s) failed",
            self.address.describe(),
            attempts,
            exc,
            self._state.watch_count(),
        )
        self._lost_at = None
        self._state.fail_all(exc)

    def abandon(self) -> None:
        """Close at once, outside any event loop (the loop the hub was used on has ended)."""
        self.closed = True
        for conn in (self.conn, self._broken):
            if conn is not None:
                conn.abandon()
        self.conn = self._broken = None

    async def aclose(self, last_write: List[Write]) -> None:
        """Send ``last_write`` (best effort, within a second), then close."""
        self.closed = True
        conn, self.conn = self.conn, None
        if conn is None:
            return
        if last_write:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                try:
                    await conn.send_pieces(write_pieces(last_write))
                except ConnectionLost:
                    pass
        await conn.aclose()
