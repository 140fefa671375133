"""Attributes of the Celery-based seed that are intentionally gone: reading one raises an
``AttributeError`` that says what to use instead (``hasattr`` is False, as for any missing attribute)."""

from __future__ import annotations

from typing import NoReturn

__all__ = ("gone",)


def gone(name: str, instead: str) -> property:
    """A read-only attribute ``name`` whose every read raises ``AttributeError`` naming ``instead``."""

    def read(self: object) -> NoReturn:
        raise AttributeError(f"{type(self).__name__}.{name} is gone (it was the Celery-based client's): {instead}")

    return property(read, doc=f"Gone with Celery: {instead}")
