"""The one exception of the I/O layer (no I/O here: the sans-IO hub state raises and delivers it too)."""

from __future__ import annotations

__all__ = ("ConnectionLost", "interrupted")


class ConnectionLost(Exception):
    """A Redis server could not be reached, dropped us, or refused us. Mapped to a public error above.

    ``maybe_sent``: the commands may have reached the server before the connection failed (their
    effect is unknown); False when the failure happened before anything was written. ``timed_out``:
    the server stopped answering without closing the connection, so bytes written may still be on
    their way to it (nothing found there yet proves they never will be).
    """

    maybe_sent = False
    timed_out = False


def interrupted(exc: BaseException) -> ConnectionLost:
    """What the other callers of a group commit interrupted by ``exc`` (KeyboardInterrupt...) are told:
    their commands may or may not have reached the server."""
    error = ConnectionLost(f"the write was interrupted ({type(exc).__name__})")
    error.maybe_sent = True
    return error
