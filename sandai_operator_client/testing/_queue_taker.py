"""How the fake operator takes messages off its Redis queues, as kombu's Redis transport does."""

from __future__ import annotations

from typing import List, Sequence, Set, Tuple

import anyio

from .._core.command_channel import CommandChannel
from .._io.redis import RedisConnection
from ..protocol.kombu_redis import decode_redis_envelope, priority_list_names
from ..protocol.resp import RespError
from ..protocol.serialization import DecodeError

__all__ = ("QueueTaker",)

Taken = List[Tuple[str, str, bytes]]
"""Messages taken: their list, their delivery tag, their envelope."""

_TAKE_SCRIPT = """
local n = tonumber(ARGV[1])
local hash = KEYS[#KEYS]
for i = 1, #KEYS - 1 do
  local items = redis.call('RPOP', KEYS[i], n)
  if items then
    for _, item in ipairs(items) do
      local ok, env = pcall(cjson.decode, item)
      local tag = 'undecodable'
      if ok and type(env) == 'table' and type(env.properties) == 'table' and env.properties.delivery_tag then
        tag = env.properties.delivery_tag
      end
      redis.call('HSET', hash, tag, item)
    end
    return {KEYS[i], items}
  end
end
return false
"""


def _delivery_tag(raw: bytes) -> str:
    try:
        return str(decode_redis_envelope(raw)[0]["properties"]["delivery_tag"])
    except (DecodeError, KeyError, TypeError):
        return "undecodable"


class QueueTaker:
    """Takes messages off ``queues`` (their priority lists, in the SDK's order): at most ``prefetch`` at a
    time; ``reliable``: popped and noted in kombu's ``unacked`` hash in one atomic step (and recovered
    from it after a restart); ``track_unacked``: noted there after popping."""

    def __init__(self, queues: Sequence[str], prefetch: int, *, reliable: bool, track_unacked: bool) -> None:
        self.queues = list(queues)
        self.prefetch = prefetch
        self.reliable = reliable
        self.track_unacked = track_unacked
        self._lists = [name for queue in queues for name in priority_list_names(queue)]
        self._blmpop = True  # Redis >= 7 has BLMPOP: taken as long as the server does not refuse it

    async def take(self, broker: RedisConnection, bookkeeping: CommandChannel) -> Taken:
        """Take messages off the queues as kombu does: pop, then note them in the ``unacked`` hash."""
        if self.reliable:
            # pop and note in one atomic step, so a connection lost in between loses nothing
            reply = await bookkeeping.execute(
                "EVAL", _TAKE_SCRIPT, len(self._lists) + 1, *self._lists, "unacked", self.prefetch
            )
            if not isinstance(reply, list):
                await anyio.sleep(0.005)
                return []
            return [(reply[0].decode(), _delivery_tag(raw), raw) for raw in reply[1]]
        if self._blmpop:  # Redis >= 7: block, then take up to `prefetch` messages at once
            reply = (
                await broker.request([("BLMPOP", 1, len(self._lists), *self._lists, "RIGHT", "COUNT", self.prefetch)])
            )[0]
            if isinstance(reply, RespError):
                self._blmpop = False
                return []
            if not isinstance(reply, list):
                return []
            list_name, messages = reply[0].decode(), reply[1]
        else:
            reply = (await broker.request([("BRPOP", *self._lists, 1)]))[0]
            if not isinstance(reply, list):
                return []
            list_name, messages = reply[0].decode(), [reply[1]]
        taken = [(list_name, _delivery_tag(raw), raw) for raw in messages]
        if self.track_unacked:
            await bookkeeping.execute_many([("HSET", "unacked", tag, raw) for _, tag, raw in taken])
        return taken

    async def recover(self, bookkeeping: CommandChannel, in_flight: Set[str]) -> Taken:
        """The messages in ``unacked`` that no handling of this operator has: taken before a restart.

        Rule: a message in flight when the HGETALL is *sent* is never taken again. Checking only the
        tags in flight when its reply is read is not enough: a handling that finishes meanwhile (its
        HDEL executed after the HGETALL, its reply read in the same pipeline, its task resumed first)
        has left the set by then, and the message would run twice.
        """
        in_flight_before = set(in_flight)
        entries = await bookkeeping.execute("HGETALL", "unacked")
        taken = []
        if isinstance(entries, list):
            for tag_raw, raw in zip(entries[::2], entries[1::2]):
                tag = tag_raw.decode()
                try:
                    queue = decode_redis_envelope(raw)[0]["properties"]["delivery_info"]["routing_key"]
                except (DecodeError, KeyError, TypeError):
                    continue
                if queue in self.queues and tag not in in_flight_before and tag not in in_flight:
                    taken.append((queue, tag, raw))
        return taken
