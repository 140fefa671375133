"""The seed's ``sandai.operator_client.config``: settings and their resolution from the environment."""

from sandai_operator_client.config import (
    VALID_PRIORITIES,
    CeleryConfig,
    ClientConfig,
    ConnectionPolicy,
    Priority,
    env_bool,
    get_celery_config,
    get_default_celery_config,
    resolve_client_config,
)

__all__ = (
    "VALID_PRIORITIES",
    "CeleryConfig",
    "ClientConfig",
    "ConnectionPolicy",
    "Priority",
    "env_bool",
    "get_celery_config",
    "get_default_celery_config",
    "resolve_client_config",
)
