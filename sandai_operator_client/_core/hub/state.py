"""The result hub's state machine, without I/O (as h11's ``Connection`` is to its sockets).

Events in: a watch registered or released, a subscription asked for, commands carried, a reply read,
a record fetched, the connection lost, a re-subscription begun and answered. Out: the bytes to write
(``take_write``) and outcomes delivered to the watches (``Watch.deliver``, ``Watch.reply``, ``Watch.wake``).
The driver (``driver.py``) owns the socket, the reading and the clock.

Invariants:

1. Which reply belongs to whom. Every command written has one entry in ``sent``, in write order, until
   its reply is complete: a :class:`PubSubCommand` for a (UN)SUBSCRIBE (answered by one push per channel
   named, or by one error), the :class:`Watch` that carried commands (one reply each), or None for a DEL.
   The server answers in order, so a reply that is not a pub/sub push belongs to the oldest entry open.
   Queued commands (``outbox``) have theirs in ``outbox_expected``; ``take_write`` moves both together.
2. A watch's channels. ``watchers[t]`` lists the open watches of task id ``t``, in the order they
   opened; an id no open watch holds is not in it. ``confirmed[t]`` is the latest SUBSCRIBE
   confirmation of a watched id on this connection; ``acks[t]`` the confirmations still expected for
   it, in the order asked.
3. A released id leaves every structure; its channel is UNSUBSCRIBEd at the start of the next write
   (``unsubscribing``), before any SUBSCRIBE that write may carry, and a late message for it is ignored.
4. Connection lost: every entry of ``sent`` fails with ``maybe_sent`` True (the commands may have run),
   every queued one with it False; a re-subscription replaces the outbox, ``unsubscribing`` and the
   confirmations awaited, and confirms every watched id once the server has answered it.
5. Nothing is lost that was read: a result that arrives while nobody waits is kept in its watches'
   ``outcomes`` (and Celery SETEXes before it PUBLISHes, so a re-fetch finds what a lost connection missed).
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Dict, Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple, Union, cast

from ..._io.errors import ConnectionLost
from ..._log import logger
from ...errors import ResultDecodeError
from ...protocol.resp import Command, Push, RespError, encode_pipeline
from ...protocol.results import decode_result_record
from ...protocol.serialization import DecodeError
from .commands import ResultKeysCommand, Write, channel_task_id, keys_args, keys_command
from .watch import Confirmation, Outcome, SubscriptionRefused, Watch

__all__ = ("HubState", "PubSubCommand", "Resubscription")


class PubSubCommand:
    """A (UN)SUBSCRIBE written and not yet answered: by ``pending`` more pushes, or by one error."""

    __slots__ = ("kind", "pending", "task_ids")

    def __init__(self, kind: bytes, channels: int, task_ids: Sequence[str] = ()) -> None:
        self.kind, self.pending = kind, channels
        self.task_ids = task_ids  # a SUBSCRIBE's: whose watches to fail when it is refused


Expected = Union[Watch, PubSubCommand, None]


class Resubscription(NamedTuple):
    """A re-subscription on a new connection: what to write, and the ids whose confirmation is due."""

    task_ids: List[str]
    command: Iterable[bytes]
    remaining: Set[str]
    superseded: Dict[str, Deque[Confirmation]]


class HubState:
    """Who watches which result channel, what was written and is due, what to write next."""

    def __init__(self, describe: str, accept: Iterable[str]) -> None:
        self.describe = describe  # the server, for messages
        self.accept = tuple(accept)
        self.watchers: Dict[str, List[Watch]] = {}
        self.acks: Dict[str, Deque[Confirmation]] = {}
        self.confirmed: Dict[str, Confirmation] = {}
        self.outbox: List[Write] = []
        self.outbox_expected: List[Expected] = []
        self.sent: Deque[Expected] = deque()
        self.forgetting: List[str] = []  # ids whose consumed result keys to DEL at the end of the next write
        self.unsubscribing: List[str] = []

    # ------------------------------------------------------------------ watches
    def register(self, watch: Watch) -> None:
        for task_id in watch.ids:
            self.watchers.setdefault(task_id, []).append(watch)

    def release(self, watch: Watch) -> bool:
        """``watch`` is gone; True when channels nobody watches now wait to be UNSUBSCRIBEd."""
        gone = []
        for task_id in watch.ids:
            watches = self.watchers.get(task_id)
            if watches is not None and watch in watches:
                watches.remove(watch)
                if not watches:
                    del self.watchers[task_id]
                    self.confirmed.pop(task_id, None)
                    gone.append(task_id)
        if not self.watchers:  # dicts never shrink: start small again after a burst
            self.watchers, self.confirmed = {}, {}
            if not self.acks:
                self.acks = {}
        self.unsubscribing += gone
        return bool(gone)

    def watching(self, task_id: str) -> Tuple[Watch, ...]:
        """The watches of ``task_id`` now (a copy: delivering may end some)."""
        watches = self.watchers.get(task_id)
        return () if watches is None else tuple(watches)

    def watch_count(self) -> int:
        return len({id(w) for watches in self.watchers.values() for w in watches})

    def unconfirmed(self, task_ids: Iterable[str]) -> List[str]:
        """Of ``task_ids``, those with no SUBSCRIBE on this connection yet."""
        return [t for t in task_ids if t not in self.confirmed]

    def confirmations(self, task_ids: Iterable[str]) -> List[Confirmation]:
        return [self.confirmed[t] for t in task_ids if t in self.confirmed]

    # ------------------------------------------------------------------ writing
    def subscribe(self, task_ids: List[str]) -> None:
        """Queue a SUBSCRIBE of ``task_ids``, each confirmed by its push."""
        for task_id in task_ids:
            confirmed = Confirmation()
            self.acks.setdefault(task_id, deque()).append(confirmed)
            self.confirmed[task_id] = confirmed
        self.queue(keys_command("SUBSCRIBE", task_ids), PubSubCommand(b"subscribe", len(task_ids), task_ids))

    def carry(self, task_ids: List[str], commands: Sequence[Command], watch: Watch) -> None:
        """Queue ``commands`` for ``watch``, after a SUBSCRIBE of ``task_ids`` in the same write: the
        server runs them after it, so they need no confirmation (encoded as sent: they may be megabytes)."""
        if task_ids:
            subscribe = PubSubCommand(b"subscribe", len(task_ids), task_ids)
            self.queue(encode_pipeline((keys_args("SUBSCRIBE", task_ids), *commands)), subscribe, watch)
        else:
            self.queue(encode_pipeline(commands), watch)

    def queue(self, data: Optional[Write], *expected: Expected) -> None:
        """Queue ``data`` (one ``expected`` entry per command in it), after the UNSUBSCRIBE of what was
        released since the last write; ``data`` None queues only that."""
        if self.unsubscribing:
            gone, self.unsubscribing = self.unsubscribing, []
            self.outbox.append(keys_command("UNSUBSCRIBE", gone))
            self.outbox_expected.append(PubSubCommand(b"unsubscribe", len(gone)))
        if data is not None:
            self.outbox.append(data)
            self.outbox_expected += expected

    def forget(self, task_ids: Sequence[str]) -> None:
        """DEL the tasks' result keys at the end of the next write."""
        self.forgetting.extend(task_ids)

    def take_write(self) -> List[Write]:
        """What to write now (empty: nothing); its replies are due from here on."""
        if self.forgetting:  # last in the write, so last in the replies
            self.outbox.append(encode_pipeline((ResultKeysCommand("DEL", self.forgetting),)))
            self.outbox_expected.append(None)
            self.forgetting = []
        outbox, self.outbox = self.outbox, []
        self.sent.extend(self.outbox_expected)
        self.outbox_expected = []
        return outbox

    # ------------------------------------------------------------------ reading
    def receive(self, reply: object, resp3: bool) -> None:
        """A reply read from the connection (RESP3 tells pushes apart; on RESP2 they are arrays)."""
        if type(reply) is not Push and (resp3 or type(reply) is not list):
            self._command_reply(reply)
            return
        push = cast(List[object], reply)
        if len(push) < 3:
            return
        kind, channel, payload = push[0], push[1], push[2]
        if kind == b"subscribe" or kind == b"unsubscribe":
            head = self.sent[0] if self.sent else None
            if type(head) is PubSubCommand and head.kind == kind:
                head.pending -= 1
                if not head.pending:
                    self.sent.popleft()
        if kind != b"message" and kind != b"subscribe":
            return
        task_id = channel_task_id(channel)
        if task_id is None:
            return
        if kind == b"message":
            watches = self.watching(task_id)
            if watches:
                outcome = self.decode(task_id, payload)
                if outcome is not None:
                    for watch in watches:
                        watch.deliver(task_id, outcome)
        elif self._confirm(task_id):
            for watch in self.watching(task_id):
                watch.wake()

    def fetched(self, task_id: str, raw: object) -> None:
        """A record read from ``task_id``'s result key (None: there is none yet)."""
        if raw is not None:
            outcome = self.decode(task_id, raw)
            if outcome is not None:
                for watch in self.watching(task_id):
                    watch.deliver(task_id, outcome)

    def decode(self, task_id: str, raw: object) -> Optional[Outcome]:
        """A record's outcome; None while the task is not finished."""
        data = raw if isinstance(raw, bytes) else b""
        try:
            record = decode_result_record(data, self.accept)
        except DecodeError as exc:
            logger.warning("the result record of task %s cannot be decoded: %s", task_id, exc)
            return ResultDecodeError(task_id, str(exc), data)
        return record if record.ready else None

    def _confirm(self, task_id: str) -> bool:
        """The oldest SUBSCRIBE confirmation awaited for ``task_id`` came; False when none was awaited."""
        pending = self.acks.get(task_id)
        if not pending:
            return False
        pending.popleft().done = True
        if not pending:
            del self.acks[task_id]
        return True

    def _command_reply(self, reply: object) -> None:
        if not self.sent:
            return  # nothing is due (a reply to a command of a dropped connection's time): ignored
        head = self.sent[0]
        if type(head) is Watch:
            head.reply(reply)
            if len(head.replies) >= head.replies_due:
                self.sent.popleft()
                if head.wake_on_replies or head.command_failed:
                    head.wake()
            return
        self.sent.popleft()  # a DEL's reply, or a (UN)SUBSCRIBE's error (success is pushes)
        if type(head) is PubSubCommand and head.kind == b"subscribe":
            message = reply.message if isinstance(reply, RespError) else repr(reply)
            self.refused(head.task_ids, message)

    def refused(self, task_ids: Sequence[str], message: str) -> None:
        """The server refused to SUBSCRIBE ``task_ids``: no result will come, their watches are told."""
        error = SubscriptionRefused(f"{self.describe} refused to subscribe to the result channels: {message}")
        for task_id in task_ids:
            self._confirm(task_id)  # the refused SUBSCRIBE is the oldest one still awaited for the id
            for watch in self.watching(task_id):
                watch.deliver(task_id, error)

    # ------------------------------------------------------------------ losing and remaking the connection
    def lost(self, sent: ConnectionLost) -> None:
        """The connection failed: what was sent may have run, what was queued surely did not."""
        sent.maybe_sent = True
        expected, self.sent = self.sent, deque()
        for entry in expected:
            if type(entry) is Watch:
                entry.fail_replies(sent)
        unsent = ConnectionLost(f"{sent}; the commands were not sent")
        queued, self.outbox_expected = self.outbox_expected, []
        for entry in queued:
            if type(entry) is Watch:
                entry.fail_replies(unsent)

    def resubscription(self) -> Resubscription:
        """Begin re-subscribing every watched id on a new connection (queued writes are superseded)."""
        task_ids = list(self.watchers)
        self.outbox = []
        self.unsubscribing = []  # a new connection is subscribed to nothing else
        self.lost(ConnectionLost(f"lost connection to {self.describe}"))
        superseded, self.acks = self.acks, {}
        command = encode_pipeline((ResultKeysCommand("SUBSCRIBE", task_ids),)) if task_ids else iter(())
        return Resubscription(task_ids, command, set(task_ids), superseded)

    def resubscribe_reply(self, resubscription: Resubscription, reply: object, resp3: bool) -> None:
        """A reply read while re-subscribing: a confirmation, a refusal, or traffic for :meth:`receive`."""
        if isinstance(reply, RespError):  # a SUBSCRIBE is refused whole (an ACL)
            self.refused(resubscription.task_ids, reply.message)
            resubscription.remaining.clear()
        elif isinstance(reply, list) and len(reply) > 1 and reply[0] == b"subscribe":
            task_id = channel_task_id(reply[1])
            if task_id is not None:
                resubscription.remaining.discard(task_id)
        else:
            self.receive(reply, resp3)

    def resubscribed(self, resubscription: Resubscription) -> None:
        """The server answered the re-subscription: every watched id is confirmed, its watches woken."""
        for confirmations in resubscription.superseded.values():
            for confirmation in confirmations:
                confirmation.done = True
        for task_id in resubscription.task_ids:
            self.confirmed.setdefault(task_id, Confirmation()).done = True
            for watch in self.watching(task_id):
                watch.wake()

    def fail_all(self, exc: ConnectionLost) -> None:
        """No connection will come back: every watch gets ``exc`` for each of its ids."""
        self.lost(ConnectionLost(str(exc)))
        for confirmations in self.acks.values():
            for confirmation in confirmations:
                confirmation.done = True
        self.acks = {}
        for confirmation in self.confirmed.values():
            confirmation.done = True
        for task_id in list(self.watchers):
            for watch in self.watching(task_id):
                watch.deliver(task_id, exc)

    def close(self, exc: ConnectionLost) -> List[Write]:
        """The hub closes: every watch gets ``exc``; the last write to send is the DEL of consumed results
        only (not the (un)subscriptions of a connection about to close, nor carried commands, whose
        callers were just told they were not sent)."""
        self.fail_all(exc)
        self.outbox = []
        self.unsubscribing = []
        return self.take_write()
