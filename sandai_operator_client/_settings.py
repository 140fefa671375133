"""The settings both facades expose as attributes (the seed did), resolved once."""

from __future__ import annotations

from typing import Dict, List, Optional

from ._core.tracing import configure_from_environment
from ._gone import gone
from ._log import logger
from .config import (
    VALID_PRIORITIES,
    ClientConfig,
    ConnectionPolicy,
    Priority,
    check_priority,
    redact_url,
    resolve_client_config,
)

__all__ = ("ClientSettings",)


class ClientSettings:
    """Resolves a client's configuration and exposes it as the seed's attributes.

    Arguments are the seed's: ``broker_url`` and ``result_backend`` (else ``SANDAI_OPERATOR_CELERY_*``,
    else ``redis://localhost:6379/0``), ``timeout`` (seconds: the task's deadline and the default wait),
    ``debug``, ``priority``, ``cancel_key`` (default for every task), ``auto_forget_result`` (delete
    result keys once read; ``SANDAI_OPERATOR_AUTO_FORGET_RESULT``, default on). Beyond the seed:
    ``connection``, a :class:`~sandai_operator_client.config.ConnectionPolicy` (I/O timeout, idle checks,
    TCP keepalive); ``task_serializer`` (``"msgpack"``, the default, or ``"json"``: operators built with
    sandai-operator-sdk 0.4.0 or older accept only json) and ``result_serializer``, else
    ``SANDAI_OPERATOR_CELERY_TASK_SERIALIZER`` / ``..._RESULT_SERIALIZER``, whether or not URLs are passed.

    Raises:
        InvalidPriorityError: ``priority`` is not one of ``VALID_PRIORITIES``.
        ValueError: the result backend is not Redis, or a serializer is not json/msgpack.
    """

    config: ClientConfig
    valid_priorities: List[str]
    operator_name: str
    operator_version: str
    timeout: float
    debug: bool
    priority: Priority
    cancel_key: Optional[str]
    auto_forget_result: bool
    task_name: str
    queue_names: Dict[str, str]
    broker_url: str
    result_backend: str
    task_serializer: str
    result_serializer: str

    def __init__(
        self,
        operator_name: str,
        operator_version: str,
        broker_url: Optional[str] = None,
        result_backend: Optional[str] = None,
        timeout: float = 28800,
        debug: bool = False,
        priority: Priority = "normal",
        cancel_key: Optional[str] = None,
        auto_forget_result: Optional[bool] = None,
        *,
        connection: Optional[ConnectionPolicy] = None,
        task_serializer: Optional[str] = None,
        result_serializer: Optional[str] = None,
    ) -> None:
        check_priority(priority)
        config = resolve_client_config(
            operator_name,
            operator_version,
            broker_url=broker_url,
            result_backend=result_backend,
            timeout=timeout,
            debug=debug,
            priority=priority,
            cancel_key=cancel_key,
            auto_forget_result=auto_forget_result,
            connection=connection,
            task_serializer=task_serializer,
            result_serializer=result_serializer,
        )
        self.config = config
        self.valid_priorities = list(VALID_PRIORITIES)
        self.operator_name = config.operator_name
        self.operator_version = config.operator_version
        self.timeout = config.timeout
        self.debug = config.debug
        self.priority = config.priority
        self.cancel_key = config.cancel_key
        self.auto_forget_result = config.auto_forget_result
        self.task_name = config.task_name
        self.queue_names = dict(config.queue_names)
        self.broker_url = config.broker_url
        self.result_backend = config.result_backend
        self.task_serializer = config.celery.task_serializer
        self.result_serializer = config.celery.result_serializer
        configure_from_environment(self.operator_name)  # upstream 0.6.x's tracing switches
        self._open()
        self._logged_close = False
        logger.info(
            "%s for %s %s opened: broker %s, results %s",
            type(self).__name__,
            self.operator_name,
            self.operator_version,
            redact_url(self.broker_url),
            redact_url(self.result_backend),
        )

    def _log_close(self) -> None:
        if not self._logged_close:
            self._logged_close = True
            logger.info("%s for %s %s closed", type(self).__name__, self.operator_name, self.operator_version)

    celery_app = gone(
        "celery_app",
        "there is no Celery app; the settings are this client's attributes and "
        "`config` (serializers: the task_serializer= keyword)",
    )
    transport = gone("transport", "the client speaks the protocol itself; use its methods")

    def _open(self) -> None:
        """Build the client's core (each facade in its own way)."""
        raise NotImplementedError

    def get_queue_info(self) -> Dict[str, str]:
        """Queue name per priority."""
        return dict(self.config.queue_names)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.operator_name} {self.operator_version} {self.config.celery!r}>"
