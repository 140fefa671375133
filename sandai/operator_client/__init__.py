"""Alias of :mod:`sandai_operator_client` so seed callers keep ``from sandai.operator_client import ...``.

``sandai`` stays a namespace package (no ``sandai/__init__.py``), so this coexists with the operator SDK's
``sandai.operator``. Names resolve lazily, as in the package itself; type checkers see them all (this
package is typed: ``py.typed``). The seed's submodules ``client``, ``exceptions``, ``config`` and ``types``
exist too, with the names the seed had there.
"""

from typing import Any, List

import sandai_operator_client as _package
from sandai_operator_client import __all__, __version__  # noqa: F401

TYPE_CHECKING = False
if TYPE_CHECKING:  # what a type checker needs to see every name; at run time they load on first use
    from sandai_operator_client import *  # noqa: F403


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(_package, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
