"""Alias of :mod:`sandai_operator_client` so seed callers keep ``from sandai.operator_client import ...``.

``sandai`` stays a namespace package (no ``sandai/__init__.py``), so this coexists with the operator SDK's
``sandai.operator``. Names resolve lazily, as in the package itself.
"""

from typing import Any, List

import sandai_operator_client as _package
from sandai_operator_client import __all__, __version__  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(_package, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
