"""The result hub's state machine, without a server: tables of reply interleavings and a hypothesis
state machine against a model of Redis (what it answers to the bytes the state writes)."""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, Generator, List, Set

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sandai_operator_client._core.hub.commands import write_pieces
from sandai_operator_client._core.hub.state import HubState
from sandai_operator_client._core.hub.watch import SubscriptionRefused, Watch, WatchOptions
from sandai_operator_client._io.errors import ConnectionLost
from sandai_operator_client.errors import ResultDecodeError
from sandai_operator_client.protocol.resp import Push, RespError, RespReader
from sandai_operator_client.protocol.results import RESULT_KEY_PREFIX, ResultRecord, encode_result_record

PREFIX = RESULT_KEY_PREFIX.encode()


class NoHub:
    """A watch's owner for tests that never enter it."""

    def open_watch(self, watch: Watch, options: WatchOptions) -> Any:  # pragma: no cover
        raise AssertionError("not entered in these tests")

    def release_watch(self, watch: Watch) -> Any:  # pragma: no cover
        raise AssertionError("not entered in these tests")


class Waker:
    """A one-shot wake-up that counts how often it was set."""

    def __init__(self) -> None:
        self.woken = 0

    def done(self) -> bool:
        return False

    def set_result(self, value: Any) -> None:
        self.woken += 1

    def __await__(self) -> Generator[Any, None, Any]:  # pragma: no cover
        yield None


OPTIONS = WatchOptions(True, None, None, True, float("inf"))


def new_watch(*ids: str) -> Watch:
    watch = Watch(NoHub(), ids, OPTIONS)
    watch.event = Waker()
    return watch


def woken(watch: Watch) -> int:
    assert isinstance(watch.event, Waker)
    return watch.event.woken


def record(task_id: str, status: str = "SUCCESS") -> bytes:
    return encode_result_record(task_id=task_id, status=status, result={"ok": task_id}, date_done="2026-12-02")


def push(kind: bytes, task_id: str, payload: object = 1) -> Push:
    return Push([kind, PREFIX + task_id.encode(), payload])


def commands_in(writes: List[Any]) -> List[List[bytes]]:
    """The commands in a write, as the server parses them."""
    reader = RespReader()
    reader.feed(b"".join(write_pieces(writes)))
    return [list(c) for c in reader.replies()]  # type: ignore[call-overload]


def keys(*task_ids: str) -> List[bytes]:
    return [PREFIX + t.encode() for t in task_ids]


# ---------------------------------------------------------------------------------------------- tables
def test_a_subscription_is_one_write_confirmed_by_its_pushes() -> None:
    state, watch = HubState("test", ["json"]), new_watch("a", "b")
    state.register(watch)
    state.subscribe(state.unconfirmed(watch.ids))
    assert commands_in(state.take_write()) == [[b"SUBSCRIBE", *keys("a", "b")]]
    confirmations = state.confirmations(watch.ids)
    state.receive(push(b"subscribe", "a"), resp3=True)
    assert [c.done for c in confirmations] == [True, False] and state.sent
    state.receive(push(b"subscribe", "b", 2), resp3=True)
    assert all(c.done for c in confirmations) and not state.sent and woken(watch) == 2
    assert state.unconfirmed(["a", "b", "c"]) == ["c"]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (record("a"), ResultRecord),
        (record("a", "STARTED"), None),  # not ready: nothing delivered
        (b"\x00not json", ResultDecodeError),
    ],
)
def test_a_message_is_delivered_when_it_is_a_final_record(payload: bytes, expected: Any) -> None:
    state, watch, other = HubState("test", ["json"]), new_watch("a"), new_watch("b")
    state.register(watch)
    state.register(other)
    state.receive(push(b"message", "a", payload), resp3=True)
    state.receive(push(b"message", "zzz", record("zzz")), resp3=True)  # nobody watches it
    if expected is None:
        assert watch.outcomes == {}
    else:
        assert isinstance(watch.outcomes["a"], expected)
    assert other.outcomes == {}


def test_carried_replies_are_told_from_pushes_and_from_a_del() -> None:
    # one write: UNSUBSCRIBE (of a released id), SUBSCRIBE + two carried commands, then a DEL; the
    # server's answers interleave with a message for a watched task
    state, old, carrier = HubState("test", ["json"]), new_watch("old"), new_watch("new")
    state.register(old)
    state.subscribe(["old"])
    state.take_write()
    state.receive(push(b"subscribe", "old"), resp3=True)
    state.release(old)
    state.register(carrier)
    carrier.replies_due, carrier.wake_on_replies = 2, False
    state.carry(state.unconfirmed(carrier.ids), [("LPUSH", "q", "x"), ("LPUSH", "q", "y")], carrier)
    state.forget(["done"])
    assert commands_in(state.take_write()) == [
        [b"UNSUBSCRIBE", *keys("old")],
        [b"SUBSCRIBE", *keys("new")],
        [b"LPUSH", b"q", b"x"],
        [b"LPUSH", b"q", b"y"],
        [b"DEL", *keys("done")],
    ]
    for reply in (
        push(b"unsubscribe", "old", 0),
        push(b"message", "old", record("old")),  # late: nobody watches it any more
        push(b"subscribe", "new"),
        1,
        push(b"message", "new", record("new")),  # not possible from Redis here, harmless if it were
        2,
        1,  # the DEL's
    ):
        state.receive(reply, resp3=True)
    assert carrier.replies == [1, 2] and not carrier.command_failed and "new" in carrier.outcomes
    assert old.outcomes == {} and not state.sent


def test_on_resp2_arrays_are_pub_sub_and_everything_else_answers_a_command() -> None:
    state, watch = HubState("test", ["json"]), new_watch("a")
    state.register(watch)
    state.subscribe(["a"])
    state.forget(["a"])
    state.take_write()
    state.receive([b"subscribe", PREFIX + b"a", 1], resp3=False)
    state.receive([b"message", PREFIX + b"a", record("a")], resp3=False)
    state.receive(1, resp3=False)  # the DEL
    assert "a" in watch.outcomes and not state.sent


def test_a_watch_cancelled_with_replies_due_takes_nothing_from_the_next_one() -> None:
    # the caller was cancelled after its SUBSCRIBE + LPUSH went out: the watch is released (its
    # UNSUBSCRIBE queued), the server still answers what was sent, in order; the next watch's own
    # carried reply is its own, and the cancelled task's late result reaches nobody
    state, cancelled, next_call = HubState("test", ["json"]), new_watch("a"), new_watch("b")
    state.register(cancelled)
    cancelled.replies_due = 1
    state.carry(["a"], [("LPUSH", "q", "a")], cancelled)
    state.take_write()
    assert state.release(cancelled) is True and state.unsubscribing == ["a"]
    state.register(next_call)
    next_call.replies_due = 1
    state.carry(state.unconfirmed(next_call.ids), [("LPUSH", "q", "b")], next_call)
    assert commands_in(state.take_write()) == [
        [b"UNSUBSCRIBE", *keys("a")],
        [b"SUBSCRIBE", *keys("b")],
        [b"LPUSH", b"q", b"b"],
    ]
    for reply in (
        push(b"subscribe", "a"),
        7,  # the cancelled call's LPUSH
        push(b"message", "a", record("a")),  # its result, before the UNSUBSCRIBE took effect
        push(b"unsubscribe", "a", 0),
        push(b"subscribe", "b"),
        8,  # the next call's LPUSH
    ):
        state.receive(reply, resp3=True)
    assert next_call.replies == [8] and next_call.outcomes == {} and not state.sent
    assert state.watching("a") == () and state.watch_count() == 1


def test_a_refused_subscription_fails_its_watches_and_nothing_else() -> None:
    state, refused, fine = HubState("test", ["json"]), new_watch("a"), new_watch("b")
    for watch in (refused, fine):
        state.register(watch)
    state.subscribe(["a"])
    state.subscribe(["b"])
    state.take_write()
    state.receive(RespError("NOPERM no permissions"), resp3=True)
    state.receive(push(b"subscribe", "b"), resp3=True)
    assert isinstance(refused.outcomes["a"], SubscriptionRefused) and "NOPERM" in str(refused.outcomes["a"])
    assert fine.outcomes == {} and all(c.done for c in state.confirmations(["a", "b"])) and not state.sent


def test_a_lost_connection_fails_sent_commands_as_maybe_sent_and_queued_ones_as_not_sent() -> None:
    state, sent, queued = HubState("test", ["json"]), new_watch("a"), new_watch("b")
    for watch in (sent, queued):
        state.register(watch)
        watch.replies_due = 2
    state.carry(["a"], [("LPUSH", "q", "1"), ("LPUSH", "q", "2")], sent)
    state.take_write()
    state.receive(push(b"subscribe", "a"), resp3=True)
    state.receive(1, resp3=True)  # the first LPUSH's reply came, the second's did not
    state.carry(["b"], [("LPUSH", "q", "3"), ("LPUSH", "q", "4")], queued)
    state.lost(ConnectionLost("gone"))
    assert sent.replies[0] == 1 and isinstance(sent.replies[1], ConnectionLost) and sent.replies[1].maybe_sent
    assert all(isinstance(r, ConnectionLost) and not r.maybe_sent for r in queued.replies)
    assert sent.command_failed and queued.command_failed and not state.sent and not state.outbox_expected


def test_a_re_subscription_replaces_what_was_queued_and_confirms_every_watched_id() -> None:
    state, a, b = HubState("test", ["json"]), new_watch("a"), new_watch("b")
    state.register(a)
    state.subscribe(["a"])
    state.take_write()
    waiting = state.confirmations(["a"])
    state.register(b)
    state.subscribe(["b"])  # queued when the connection drops
    state.lost(ConnectionLost("gone"))
    resubscription = state.resubscription()
    assert not state.outbox and sorted(resubscription.task_ids) == ["a", "b"]
    assert commands_in([b"".join(resubscription.command)]) == [[b"SUBSCRIBE", *keys("a", "b")]]
    for reply in (push(b"subscribe", "a"), push(b"message", "a", record("a")), push(b"subscribe", "b", 2)):
        assert resubscription.remaining
        state.resubscribe_reply(resubscription, reply, resp3=True)
    assert not resubscription.remaining
    state.resubscribed(resubscription)
    assert all(c.done for c in waiting) and all(c.done for c in state.confirmations(["a", "b"]))
    assert "a" in a.outcomes and woken(b) >= 1


def test_a_refused_re_subscription_fails_every_watch() -> None:
    state, watch = HubState("test", ["json"]), new_watch("a", "b")
    state.register(watch)
    resubscription = state.resubscription()
    state.resubscribe_reply(resubscription, RespError("NOPERM"), resp3=True)
    assert not resubscription.remaining and set(watch.outcomes) == {"a", "b"}


def test_ids_watched_twice_stay_subscribed_until_their_last_watch_leaves() -> None:
    state, first, second = HubState("test", ["json"]), new_watch("a", "b"), new_watch("a")
    state.register(first)
    state.register(second)
    assert state.watch_count() == 2 and len(state.watchers) == 2
    assert state.release(first) is True  # "b" is gone
    assert state.unsubscribing == ["b"] and state.watching("a") == (second,)
    state.receive(push(b"message", "a", record("a")), resp3=True)
    assert "a" in second.outcomes and first.outcomes == {}
    assert state.release(second) is True and state.unsubscribing == ["b", "a"] and state.watch_count() == 0


def test_fail_all_gives_every_watch_the_error_for_each_of_its_ids() -> None:
    state, one, two = HubState("test", ["json"]), new_watch("a", "b"), new_watch("b")
    for watch in (one, two):
        state.register(watch)
    state.subscribe(["a", "b"])
    state.take_write()
    error = ConnectionLost("the client is closed")
    state.fail_all(error)
    assert one.outcomes == {"a": error, "b": error} and two.outcomes == {"b": error}
    assert all(c.done for c in state.confirmations(["a", "b"]))


def test_closing_writes_only_the_del_of_consumed_results() -> None:
    state, watch, carrier = HubState("test", ["json"]), new_watch("a"), new_watch("b")
    state.register(watch)
    state.register(carrier)
    carrier.replies_due = 1
    state.subscribe(["a"])
    state.carry(["b"], [("LPUSH", "q", "b")], carrier)  # queued, never sent
    state.forget(["done"])
    error = ConnectionLost("the client is closed")
    assert commands_in(state.close(error)) == [[b"DEL", *keys("done")]]
    assert watch.outcomes == {"a": error} and not carrier.replies[0].maybe_sent  # type: ignore[attr-defined]


def test_a_watch_is_entered_once() -> None:
    class Owner(NoHub):
        async def open_watch(self, watch: Watch, options: WatchOptions) -> Watch:
            return watch

    watch = Watch(Owner(), ["a"], OPTIONS)
    watch.__aenter__().close()
    with pytest.raises(RuntimeError, match="entered once"):
        watch.__aenter__()


def test_a_replies_wait_and_an_outcomes_wait_are_told_apart() -> None:
    watch = new_watch("a", "b")
    watch.need, watch.replies_due = 2, 1
    assert not watch.has_outcomes() and not watch.has_replies()
    watch.or_failed_command = True
    watch.fail_replies(ConnectionLost("gone"))
    assert watch.has_outcomes() and watch.command_failed  # a failed command ends an outcomes wait


# ------------------------------------------------------------------------------------ state machine
class RedisModel:
    """What Redis answers to the commands the state writes, on one connection."""

    def __init__(self) -> None:
        self.subscribed: Set[bytes] = set()
        self.replies: Deque[object] = deque()  # written to the client, not read yet

    def run(self, commands: List[List[bytes]]) -> None:
        for name, *args in commands:
            if name in (b"SUBSCRIBE", b"UNSUBSCRIBE"):
                kind = name.lower()
                for channel in args:
                    (self.subscribed.add if kind == b"subscribe" else self.subscribed.discard)(channel)
                    self.replies.append(Push([kind, channel, len(self.subscribed)]))
            elif name == b"ECHO":
                self.replies.append(args[0])
            elif name == b"DEL":
                self.replies.append(0)
            else:  # pragma: no cover
                raise AssertionError(f"unexpected command {name!r}")


TASK_IDS = st.sampled_from(["t0", "t1", "t2", "t3"])


class HubStateMachine(RuleBasedStateMachine):
    """Watches open and leave, commands are carried, the server answers and publishes, the connection
    drops and is remade: no reply is given to the wrong watch, no result read is lost, and once every
    answer is read nothing is due."""

    def __init__(self) -> None:
        super().__init__()
        self.state = HubState("model", ["json"])
        self.server = RedisModel()
        self.connected = True
        self.open: List[Watch] = []
        self.tokens: Dict[int, List[bytes]] = {}  # a carrying watch's ECHO arguments, in order
        self.serial = 0

    @rule(ids=st.lists(TASK_IDS, min_size=1, max_size=3, unique=True), carried=st.integers(0, 2))
    def open_watch(self, ids: List[str], carried: int) -> None:
        watch = new_watch(*ids)
        self.state.register(watch)
        if carried:
            tokens = [b"tok%d" % (self.serial + i) for i in range(carried)]
            self.serial += carried
            self.tokens[id(watch)] = tokens
            watch.replies_due = carried
            self.state.carry(self.state.unconfirmed(ids), [("ECHO", t) for t in tokens], watch)
        else:
            task_ids = self.state.unconfirmed(ids)
            if task_ids:
                self.state.subscribe(task_ids)
        self.open.append(watch)

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        watch = data.draw(st.sampled_from(self.open))
        self.open.remove(watch)
        self.state.release(watch)

    @rule(ids=st.lists(TASK_IDS, min_size=1, max_size=2, unique=True))
    def forget(self, ids: List[str]) -> None:
        self.state.forget(ids)

    @precondition(lambda self: self.connected)
    @rule()
    def write(self) -> None:
        self.state.queue(None)
        writes = self.state.take_write()
        if writes:
            self.server.run(commands_in(writes))

    @precondition(lambda self: self.connected)
    @rule(task_id=TASK_IDS)
    def publish(self, task_id: str) -> None:
        channel = PREFIX + task_id.encode()
        if channel in self.server.subscribed:
            self.server.replies.append(Push([b"message", channel, record(task_id)]))

    @precondition(lambda self: self.connected and self.server.replies)
    @rule()
    def read(self) -> None:
        reply = self.server.replies.popleft()
        self.state.receive(reply, resp3=True)
        if isinstance(reply, Push) and reply[0] == b"message":
            task_id = reply[1][len(PREFIX) :].decode()
            for watch in self.open:  # nothing read is lost: every open watch of the id has it now
                if task_id in watch.ids:
                    assert task_id in watch.outcomes

    @precondition(lambda self: self.connected)
    @rule()
    def lose_connection(self) -> None:
        self.state.lost(ConnectionLost("model: dropped"))
        self.server = RedisModel()
        self.connected = False

    @precondition(lambda self: not self.connected)
    @rule()
    def reconnect(self) -> None:
        resubscription = self.state.resubscription()
        self.server.run(commands_in([b"".join(resubscription.command)]))
        while resubscription.remaining:
            self.state.resubscribe_reply(resubscription, self.server.replies.popleft(), resp3=True)
        self.state.resubscribed(resubscription)
        self.connected = True
        for task_id in self.state.watchers:
            assert self.state.confirmed[task_id].done

    @invariant()
    def replies_go_to_the_watch_that_carried_the_commands(self) -> None:
        for watch in self.open:
            tokens = self.tokens.get(id(watch), [])
            answered = [r for r in watch.replies if not isinstance(r, ConnectionLost)]
            assert len(watch.replies) <= len(tokens)
            assert answered == tokens[: len(answered)]
            # after a failure every later reply is a failure too: nothing is answered out of order
            failed = [isinstance(r, ConnectionLost) for r in watch.replies]
            assert failed == sorted(failed)

    @invariant()
    def the_structures_hold_exactly_the_open_watches(self) -> None:
        watched: Dict[str, List[Watch]] = {}
        for watch in self.open:
            for task_id in watch.ids:
                watched.setdefault(task_id, []).append(watch)
        assert set(self.state.watchers) == set(watched)
        for task_id, watches in watched.items():
            assert sorted(map(id, self.state.watching(task_id))) == sorted(map(id, watches))
        assert set(self.state.confirmed) <= set(watched)

    @invariant()
    def once_everything_is_written_and_read_nothing_is_due(self) -> None:
        if self.connected and not self.state.outbox and not self.server.replies:
            assert not self.state.sent
            for task_id in self.state.watchers:  # every watched channel was asked for and confirmed
                if task_id in self.state.confirmed:
                    assert self.state.confirmed[task_id].done and not self.state.acks.get(task_id)


TestHubStateMachine = HubStateMachine.TestCase
TestHubStateMachine.settings = settings(max_examples=600, stateful_step_count=50, deadline=None)
