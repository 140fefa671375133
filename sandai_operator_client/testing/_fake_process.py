"""``python -m sandai_operator_client.testing.fake_operator``: a fake operator in a process of its own."""

from __future__ import annotations

from typing import Any, List, Optional

import anyio

from ..config import VALID_PRIORITIES, redact_url
from .behaviours import Delay, echo_behaviour
from .fake_operator import FakeOperator

__all__ = ("main",)


def main(argv: Optional[List[str]] = None) -> None:
    """``python -m sandai_operator_client.testing.fake_operator NAME VERSION URL [--delay S]``: run in a process."""
    import argparse

    parser = argparse.ArgumentParser(description="an echoing fake Sandai operator")
    parser.add_argument("name")
    parser.add_argument("version")
    parser.add_argument("url")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    delay = args.delay
    operator = FakeOperator(
        args.name,
        args.version,
        broker_url=args.url,
        behaviour=(lambda p: Delay(delay, echo_behaviour(p))) if delay else echo_behaviour,
    )
    operator.received = _Discard()

    async def serve() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(operator.run)
            queues = "/".join(VALID_PRIORITIES)
            print(
                f"fake operator ready: consuming {queues}.{args.name}.{args.version} on {redact_url(args.url)}"
                " (Ctrl-C stops it)",
                flush=True,
            )

    try:
        anyio.run(serve)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # one line, not a traceback: the broker is unreachable or refused us
        reason: BaseException = exc
        while len(getattr(reason, "exceptions", ())) == 1:  # an exception group of one (any Python)
            reason = reason.exceptions[0]  # type: ignore[attr-defined]
        raise SystemExit(f"fake operator: {reason}") from None


class _Discard(list):  # type: ignore[type-arg]
    """A log that keeps nothing (a long-running fake process must not grow)."""

    def append(self, item: Any) -> None:
        pass
