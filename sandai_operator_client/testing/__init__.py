"""A testing kit for projects that talk to Sandai operators.

* :class:`FakeOperator`: a protocol-level operator (consumes the priority queues, writes result records
  exactly as the operator SDK does) with scripted behaviours per task.
* A pytest plugin (registered as ``pytest11`` entry point) with fixtures ``sandai_redis_url``,
  ``fake_operator``, ``operator_client`` and ``async_operator_client``.
* :func:`assert_envelope_matches`: hold a Redis list element against a golden capture.
"""

from .envelopes import assert_envelope_matches
from .fake_operator import (
    Behaviour,
    Crash,
    Delay,
    Echo,
    Fail,
    FakeOperator,
    RawRecord,
    Reply,
    Succeed,
    echo_behaviour,
)

__all__ = (
    "Behaviour",
    "Crash",
    "Delay",
    "Echo",
    "Fail",
    "FakeOperator",
    "RawRecord",
    "Reply",
    "Succeed",
    "assert_envelope_matches",
    "echo_behaviour",
)
