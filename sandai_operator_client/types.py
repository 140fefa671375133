"""Public value types: the seed's dataclasses and TypedDicts, same names and fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional, Tuple

if TYPE_CHECKING:
    from typing_extensions import TypedDict
else:
    from typing import TypedDict

__all__ = (
    "BatchTaskResult",
    "ClientStatistics",
    "ErrorInfoDict",
    "HealthCheckResult",
    "InputArtifactDict",
    "LegacyBatchTasks",
    "LegacyTaskResult",
    "OperatorDescription",
    "OperatorTaskResult",
    "TaskMetaDict",
    "TaskPayloadDict",
)

LegacyTaskResult = Tuple[List[Dict[str, Any]], Dict[str, Any]]
"""``(artifacts, results)`` as ``sync()`` returns it."""
LegacyBatchTasks = List[Tuple[List[Dict[str, Any]], Dict[str, Any]]]
"""A batch: ``[(input_artifacts, options), ...]``."""


class InputArtifactDict(TypedDict, total=False):
    """An input artifact: ``uri`` is required, ``slot``/``name``/``meta`` optional."""

    uri: str
    slot: str
    meta: Dict[str, Any]


class TaskMetaDict(TypedDict, total=False):
    """Task metadata sent to the operator."""

    persistent_output: bool


class TaskPayloadDict(TypedDict, total=False):
    """The operator payload (the task's keyword arguments)."""

    meta: Dict[str, Any]
    artifacts: List[Dict[str, Any]]
    options: Dict[str, Any]
    deadline: float
    cancel_key: str
    task_type: str


class ErrorInfoDict(TypedDict, total=False):
    """The ``error`` member of an operator's error envelope."""

    error_type: str
    error_message: str
    error_details: Dict[str, Any]


@dataclass(frozen=True)
class OperatorTaskResult:
    """A successful task's outputs."""

    artifacts: List[Dict[str, Any]]
    results: Dict[str, Any]

    def to_legacy_tuple(self) -> LegacyTaskResult:
        """``(artifacts, results)``."""
        return self.artifacts, self.results


@dataclass(frozen=True)
class OperatorDescription:
    """What an operator says about itself (``desc``)."""

    doc: Any
    options_schema: Any
    results_schema: Any

    def to_dict(self) -> Dict[str, Any]:
        """``{"doc", "options_schema", "results_schema"}`` as the seed's ``desc`` returns it."""
        return {"doc": self.doc, "options_schema": self.options_schema, "results_schema": self.results_schema}


@dataclass(frozen=True)
class BatchTaskResult:
    """The outcome of one task of a batch, at its input ``index``."""

    index: int
    task_id: Optional[str]
    submitted: bool
    artifacts: List[Dict[str, Any]] = field(default_factory=list)
    results: Dict[str, Any] = field(default_factory=dict)
    error: Optional[Exception] = None

    @property
    def success(self) -> bool:
        """Submitted and finished without error."""
        return self.submitted and self.error is None

    def to_legacy_tuple(self) -> LegacyTaskResult:
        """``(artifacts, results)``, or ``([], {})`` for a failed task (the legacy best-effort shape)."""
        if self.success:
            return self.artifacts, self.results
        return [], {}


class ClientStatistics(NamedTuple):
    """A snapshot of a client, from ``client.statistics()`` (no I/O; the anyio/trio convention).

    ``connections``: Redis connections open now (the result connection and one command connection per
    Redis URL in use). ``watched_channels``: result channels subscribed. ``waiting_calls``: calls waiting
    for results. ``queued_commands``: commands written or queued on the result connection whose replies
    are due. ``reconnects``: result connections re-established after a loss, since the client was made.
    ``settled_writes``: publishes whose connection was cut after writing, whose outcome was then settled.
    """

    connections: int
    watched_channels: int
    waiting_calls: int
    queued_commands: int
    reconnects: int
    settled_writes: int

    def __add__(self, other: object) -> ClientStatistics:
        """Field by field (the blocking client adds its two cores' figures)."""
        if not isinstance(other, ClientStatistics):
            return NotImplemented
        return ClientStatistics(*(a + b for a, b in zip(self, other)))


@dataclass(frozen=True)
class HealthCheckResult:
    """What ``probe()`` found: could we submit, did a result come back, was it an operator envelope."""

    submit_ok: bool
    retrieval_ok: bool
    response_ok: bool
    task_id: Optional[str] = None
    error: Optional[str] = None


def __getattr__(name: str) -> Any:
    """``SubmittedTask`` and ``AsyncSubmittedTask`` live with their facades (they hold the facades'
    handles); this module's old spelling still finds them."""
    if name == "SubmittedTask":
        from ._sync_handle import SubmittedTask

        return SubmittedTask
    if name == "AsyncSubmittedTask":
        from ._async import AsyncSubmittedTask

        return AsyncSubmittedTask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
