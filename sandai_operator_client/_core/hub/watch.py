"""A watch: one caller's interest in some task ids, and what has arrived for it (pure: no I/O).

A watch's life: created (``ResultHub.watch``) -> opened (``async with``: registered with the hub's
state, subscribed) -> reading or parked, as often as its caller waits -> released (the block ends,
normally or not: no structure of the hub holds it after that). Outcomes, replies to carried commands
and wake-ups reach it from the hub's state; it never does I/O itself.
"""

from __future__ import annotations

from collections import deque
from typing import (
    Any,
    Awaitable,
    Callable,
    Coroutine,
    Deque,
    Dict,
    Generator,
    Iterable,
    List,
    NamedTuple,
    Optional,
    Protocol,
    Sequence,
    Union,
)

from ..._io.errors import ConnectionLost
from ...protocol.resp import Command, RespError
from ...protocol.results import ResultRecord

__all__ = ("Confirmation", "Outcome", "SubscriptionRefused", "Watch", "WatchOptions", "all_set")

Outcome = Union[ResultRecord, Exception]


class SubscriptionRefused(ConnectionLost):
    """A server refused a SUBSCRIBE to result channels (an ACL without pub/sub, or without the
    channels): delivered as the outcome of every watch of those tasks."""


class WatchOptions(NamedTuple):
    """How a watch is opened: see ``ResultHub.watch``."""

    fetch_existing: bool
    while_subscribing: Optional[Callable[[], Awaitable[None]]]
    commands: Optional[Sequence[Command]]
    await_replies: bool
    deadline: float


class WatchOwner(Protocol):
    """The hub a watch opens and releases itself with."""

    def open_watch(self, watch: Watch, options: WatchOptions) -> Coroutine[Any, Any, Watch]: ...

    def release_watch(self, watch: Watch) -> Coroutine[Any, Any, None]: ...


class Wakeable(Protocol):
    """What a parked watch waits on (``_io.loop.Wakeup``'s waker side)."""

    def done(self) -> bool: ...

    def set_result(self, value: Any) -> None: ...

    def __await__(self) -> Generator[Any, None, Any]: ...


class Watch:
    """One caller's interest in some task ids: ``async with`` it to subscribe for the block.

    ``ids`` maps each watched id to itself (the caller's own string, found by an equal one).
    ``outcomes`` maps an id to its outcome, or to what ``keep`` made of it as it arrived. ``arrived``
    lists ids in completion order (when asked for). ``replies`` holds the replies to the commands the
    watch carried, in order (a ``ConnectionLost`` for each whose connection failed); ``command_failed``
    tells whether any is an error. The hub's fields: ``need`` (what the current wait needs: this many
    outcomes or replies), ``or_failed_command``, ``replies_due``, ``wake_on_replies``, ``event`` (set
    only while the watch is parked or has been).
    """

    __slots__ = (
        "_hub",
        "_keep",
        "_options",
        "arrived",
        "command_failed",
        "event",
        "ids",
        "need",
        "or_failed_command",
        "outcomes",
        "replies",
        "replies_due",
        "wake_on_replies",
    )

    def __init__(
        self,
        hub: WatchOwner,
        task_ids: Iterable[str],
        options: WatchOptions,
        *,
        in_order: bool = False,
        keep: Optional[Callable[[str, Outcome], Any]] = None,
    ) -> None:
        self._hub = hub
        self._options: Optional[WatchOptions] = options  # until entered
        self._keep = keep
        self.ids: Dict[str, str] = {t: t for t in task_ids}
        self.outcomes: Dict[str, Any] = {}
        self.arrived: Optional[Deque[str]] = deque() if in_order else None
        self.replies: List[object] = []
        self.command_failed = False
        self.event: Optional[Wakeable] = None
        self.need = 0
        self.or_failed_command = False
        self.replies_due = 0
        self.wake_on_replies = True  # False: wake the watch for its replies only when a command failed

    # A watch is its own context manager (no extra object per call): these return the hub's coroutines.
    def __aenter__(self) -> Coroutine[Any, Any, Watch]:
        options, self._options = self._options, None
        if options is None:
            raise RuntimeError("a watch is entered once")
        return self._hub.open_watch(self, options)

    def __aexit__(self, *exc_info: object) -> Coroutine[Any, Any, None]:
        return self._hub.release_watch(self)

    def has_outcomes(self) -> bool:
        """The current wait is over: ``need`` outcomes are in (or a carried command failed, if asked)."""
        return len(self.outcomes) >= self.need or (self.or_failed_command and self.command_failed)

    def has_replies(self) -> bool:
        """The current wait for replies is over: ``need`` replies are in."""
        return len(self.replies) >= self.need

    def wake(self) -> None:
        """Wake the watch if it is parked (a watch that reads for itself looks again anyway)."""
        event = self.event
        if event is not None and not event.done():
            event.set_result(None)

    def reply(self, reply: object) -> None:
        """The next reply to a command the watch carried."""
        self.replies.append(reply)
        if isinstance(reply, (RespError, ConnectionLost)):
            self.command_failed = True

    def deliver(self, task_id: str, outcome: Outcome) -> None:
        """``task_id``'s outcome, kept (once) if the watch watches it."""
        own = self.ids.get(task_id)  # the watch's own string: a decoded one would be kept twice
        if own is not None and own not in self.outcomes:
            self.outcomes[own] = outcome if self._keep is None else self._keep(own, outcome)
            if self.arrived is not None:
                self.arrived.append(own)
            self.wake()

    def fail_replies(self, exc: ConnectionLost) -> None:
        """The replies still due will not come: ``exc`` stands in for each."""
        for _ in range(self.replies_due - len(self.replies)):
            self.reply(exc)
        self.wake()


class Confirmation:
    """A SUBSCRIBE confirmation, arrived or not. Waiting is done on the watches' own wake-ups (the
    state wakes a channel's watchers when its confirmation comes), so a flag suffices."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False


def all_set(confirmations: List[Confirmation]) -> Callable[[Watch], bool]:
    """A check that all ``confirmations`` arrived, resuming where it stopped.

    Rule: checking a watch of n channels after every reply costs O(n) over the whole subscription, not
    O(n) per reply (a batch would be quadratic). Confirmations are only ever set, so what was seen set
    stays set.
    """
    position = 0

    def check(_watch: Watch) -> bool:
        nonlocal position
        while position < len(confirmations):
            if not confirmations[position].done:
                return False
            position += 1
        return True

    return check
