"""Settings: the seed's configuration API (same names, same environment variables, same defaults)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional
from urllib.parse import urlsplit, urlunsplit

from .errors import InvalidPriorityError, InvalidTaskInputError

__all__ = (
    "DEFAULT_BROKER_URL",
    "VALID_PRIORITIES",
    "CeleryConfig",
    "ClientConfig",
    "ConnectionPolicy",
    "check_priority",
    "env_bool",
    "get_celery_config",
    "get_default_celery_config",
    "redact_url",
    "resolve_client_config",
)

VALID_PRIORITIES = ("high", "normal", "low", "very_low")
Priority = Literal["high", "normal", "low", "very_low"]
"""A task's priority: one of ``VALID_PRIORITIES`` (a plain ``str`` is checked at run time:
``InvalidPriorityError``)."""
DEFAULT_BROKER_URL = "redis://localhost:6379/0"
_DEFAULT_ACCEPT_CONTENT = ("json", "msgpack")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for reprs, logs and error messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def check_priority(priority: str) -> str:
    """``priority`` if it is one of ``VALID_PRIORITIES``, else ``InvalidPriorityError``."""
    if priority not in VALID_PRIORITIES:
        raise InvalidPriorityError(priority, VALID_PRIORITIES)
    return priority


def check_timeout(timeout: object, *, allow_zero: bool = False) -> float:
    """``timeout`` in seconds if it is a positive real number (or zero, where ``allow_zero``: a wait that
    only looks once); ``InvalidTaskInputError`` (a ``ValueError``) otherwise.

    A task's timeout is its deadline at the operator too: 0 or less would publish a task dead on
    arrival, which the operator skips, so it is refused before anything is sent.
    """
    if type(timeout) is not float and (type(timeout) is bool or not isinstance(timeout, (int, float))):
        raise InvalidTaskInputError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    seconds = float(timeout)
    if not (seconds > 0 or (allow_zero and seconds == 0)) or math.isnan(seconds):
        raise InvalidTaskInputError(f"timeout must be {'0 or more' if allow_zero else 'positive'}, not {timeout!r}")
    return seconds


def env_bool(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable: ``1``/``true``/``yes``/``on`` are true."""
    value = os.getenv(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ConnectionPolicy:
    """How the client's Redis connections guard against a network that fails without saying so.

    ``connect_timeout``: seconds to connect (and authenticate). ``io_timeout``: a command whose reply
    takes longer drops its connection (the client reconnects, re-subscribes and re-fetches, so results
    published meanwhile are not lost); a caller's own deadline ends its wait sooner. A publish whose
    connection was lost after writing is settled (withdrawn from the queue, or found taken) within one more
    ``io_timeout``, so a submit on a silent network ends within about twice ``io_timeout`` (then
    ``PublishOutcomeUnknownError``). ``idle_check``: a
    connection not in use for this long is looked at before it is used again (a system call, no round
    trip; 0: whenever nothing is in flight on it), and replaced when the server closed it meanwhile (its
    ``timeout`` setting, ``CLIENT KILL``, a restart): nothing was written, so nothing fails. A connection
    in steady use is never looked at: its next reply would show a close.
    ``keepalive_idle``, ``keepalive_interval``, ``keepalive_count``: TCP keepalive probes, so a peer that
    vanished is noticed on an idle connection too (``keepalive_idle`` None: off).
    """

    connect_timeout: float = 5.0
    io_timeout: float = 10.0
    idle_check: float = 0.25
    keepalive_idle: Optional[float] = 15.0
    keepalive_interval: float = 5.0
    keepalive_count: int = 3


@dataclass
class CeleryConfig:
    """Broker and result backend URLs and serializers (Celery's names, kept from the seed)."""

    broker_url: str
    result_backend: str
    task_serializer: str = "msgpack"
    result_serializer: str = "json"
    accept_content: Optional[List[str]] = None

    def __post_init__(self) -> None:
        if self.accept_content is None:
            values = list(_DEFAULT_ACCEPT_CONTENT)
            for serializer in (self.task_serializer, self.result_serializer):
                if serializer and serializer not in values:
                    values.append(serializer)
            self.accept_content = values

    def __repr__(self) -> str:
        return (
            f"CeleryConfig(broker_url={redact_url(self.broker_url)!r}, "
            f"result_backend={redact_url(self.result_backend)!r}, task_serializer={self.task_serializer!r}, "
            f"result_serializer={self.result_serializer!r}, accept_content={self.accept_content!r})"
        )


@dataclass(frozen=True)
class ClientConfig:
    """A client's resolved settings."""

    operator_name: str
    operator_version: str
    celery: CeleryConfig
    timeout: float = 28800
    debug: bool = False
    priority: Priority = "normal"
    cancel_key: Optional[str] = None
    auto_forget_result: bool = True
    connection: ConnectionPolicy = field(default_factory=ConnectionPolicy)
    queue_names: Dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        queues = {p: f"{p}.{self.operator_name}.{self.operator_version}" for p in VALID_PRIORITIES}
        object.__setattr__(self, "queue_names", queues)

    @property
    def broker_url(self) -> str:
        """The broker URL."""
        return self.celery.broker_url

    @property
    def result_backend(self) -> str:
        """The result backend URL."""
        return self.celery.result_backend

    @property
    def task_name(self) -> str:
        """``sandai_operator.<name>.<version>.process_task``."""
        return f"sandai_operator.{self.operator_name}.{self.operator_version}.process_task"

    @property
    def app_name(self) -> str:
        """The name the seed gave its Celery app (kept for callers that log it)."""
        return f"sandai_client_{self.operator_name}_{self.operator_version}"


def get_celery_config() -> Optional[CeleryConfig]:
    """Settings from ``SANDAI_OPERATOR_CELERY_*``, or None when no broker URL is set."""
    broker_url = os.getenv("SANDAI_OPERATOR_CELERY_BROKER_URL")
    result_backend = os.getenv("SANDAI_OPERATOR_CELERY_RESULT_BACKEND", broker_url)
    if not (broker_url and result_backend):
        return None
    return CeleryConfig(
        broker_url=broker_url,
        result_backend=result_backend,
        task_serializer=os.getenv("SANDAI_OPERATOR_CELERY_TASK_SERIALIZER", "msgpack"),
        result_serializer=os.getenv("SANDAI_OPERATOR_CELERY_RESULT_SERIALIZER", "json"),
    )


def get_default_celery_config() -> CeleryConfig:
    """The local-development defaults: Redis on localhost for both."""
    return CeleryConfig(broker_url=DEFAULT_BROKER_URL, result_backend=DEFAULT_BROKER_URL)


def resolve_client_config(
    operator_name: str,
    operator_version: str,
    *,
    broker_url: Optional[str] = None,
    result_backend: Optional[str] = None,
    timeout: float = 28800,
    debug: bool = False,
    priority: Priority = "normal",
    cancel_key: Optional[str] = None,
    auto_forget_result: Optional[bool] = None,
    connection: Optional[ConnectionPolicy] = None,
    task_serializer: Optional[str] = None,
    result_serializer: Optional[str] = None,
) -> ClientConfig:
    """Resolve a client's settings: explicit URLs, else the environment, else the local defaults.

    Serializers: the keyword, else ``SANDAI_OPERATOR_CELERY_TASK_SERIALIZER`` /
    ``..._RESULT_SERIALIZER``, else msgpack / json — whether or not URLs are passed (the seed read the
    variables only when no URL was passed).
    """
    if broker_url or result_backend:
        resolved_broker = broker_url or DEFAULT_BROKER_URL
        urls = CeleryConfig(broker_url=resolved_broker, result_backend=result_backend or resolved_broker)
    else:
        urls = get_celery_config() or get_default_celery_config()
    celery = CeleryConfig(
        broker_url=urls.broker_url,
        result_backend=urls.result_backend,
        task_serializer=task_serializer or os.getenv("SANDAI_OPERATOR_CELERY_TASK_SERIALIZER") or "msgpack",
        result_serializer=result_serializer or os.getenv("SANDAI_OPERATOR_CELERY_RESULT_SERIALIZER") or "json",
    )
    return ClientConfig(
        operator_name=operator_name,
        operator_version=operator_version,
        celery=celery,
        timeout=timeout,
        debug=debug,
        priority=priority,
        cancel_key=cancel_key,
        auto_forget_result=(
            auto_forget_result
            if auto_forget_result is not None
            else env_bool("SANDAI_OPERATOR_AUTO_FORGET_RESULT", True)
        ),
        connection=connection or ConnectionPolicy(),
    )
