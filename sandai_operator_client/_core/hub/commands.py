"""The commands the result hub writes, and how its writes are cut into pieces (pure: no I/O)."""

from __future__ import annotations

from typing import Iterator, List, Optional, Sequence, Tuple, Union

from ...protocol.resp import PIECE_SIZE, Command, encode_command, encode_pipeline
from ...protocol.results import RESULT_KEY_PREFIX, result_key

__all__ = ("Write", "ResultKeysCommand", "channel_task_id", "keys_command", "keys_args", "write_pieces")

Write = Union[bytes, Iterator[bytes]]
"""One queued write: a command encoded at once, or a pipeline encoded piece by piece as it is sent."""

_KEY_PREFIX = RESULT_KEY_PREFIX.encode()


class ResultKeysCommand:
    """``<name> <result key>...`` of some task ids (a :class:`~..protocol.resp.Command`).

    Rule: the hub keeps task ids, never result keys; a key is made only as its command is encoded.
    """

    __slots__ = ("name", "task_ids")

    def __init__(self, name: str, task_ids: Sequence[str]) -> None:
        self.name, self.task_ids = name, task_ids

    def __len__(self) -> int:
        return 1 + len(self.task_ids)

    def __iter__(self) -> Iterator[str]:
        yield self.name
        for task_id in self.task_ids:
            yield result_key(task_id)


def keys_args(name: str, task_ids: Sequence[str]) -> Command:
    """``<name> <result key>...``: a plain tuple for one key (a call's), keys made as encoded for many."""
    return (name, result_key(task_ids[0])) if len(task_ids) == 1 else ResultKeysCommand(name, task_ids)


def keys_command(name: str, task_ids: Sequence[str]) -> Write:
    """``<name> <result key>...`` encoded: at once for one key (a call's), as it is sent for many."""
    if len(task_ids) == 1:
        return encode_command(name, result_key(task_ids[0]))
    return encode_pipeline((ResultKeysCommand(name, task_ids),))


def write_pieces(writes: List[Write]) -> Iterator[bytes]:
    """What to send for ``writes``: small writes joined into one piece (one system call for many
    callers' commands), a long pipeline piece by piece as it is encoded."""
    run: List[bytes] = []
    size = 0
    for write in writes:
        pieces: Union[Tuple[bytes], Iterator[bytes]] = (write,) if isinstance(write, bytes) else write
        for piece in pieces:
            if size + len(piece) > PIECE_SIZE and run:
                yield b"".join(run)
                run, size = [], 0
            run.append(piece)
            size += len(piece)
    if run:
        yield b"".join(run)


def channel_task_id(raw: object) -> Optional[str]:
    """The task id of the result channel a pub/sub reply names; None for any other channel."""
    if isinstance(raw, bytes) and raw.startswith(_KEY_PREFIX):
        return raw[len(_KEY_PREFIX) :].decode(errors="replace")
    return None
