"""A testing kit for projects that talk to Sandai operators.

* :class:`FakeOperator`: a protocol-level operator (consumes the priority queues, writes result records
  exactly as the operator SDK does) with scripted behaviours per task.
* A pytest plugin (registered as ``pytest11`` entry point) with fixtures ``sandai_redis_url``,
  ``fake_operator``, ``operator_client`` and ``async_operator_client``.
* :func:`assert_envelope_matches`: hold a Redis list element against a golden capture.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
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


def __getattr__(name: str) -> object:
    # loaded on first use: the pytest plugin imports this package in every pytest run of an environment
    # that has it, and ``python -m ...testing.fake_operator`` must not find that module imported already
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    module = import_module(".envelopes" if name == "assert_envelope_matches" else ".fake_operator", __name__)
    value = getattr(module, name)
    globals()[name] = value
    return value
