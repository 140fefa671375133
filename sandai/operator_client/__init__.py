"""Alias of :mod:`sandai_operator_client` so seed callers keep ``from sandai.operator_client import ...``.

``sandai`` stays a namespace package (no ``sandai/__init__.py``), so this coexists with the operator SDK's
``sandai.operator``.
"""

from sandai_operator_client import *  # noqa: F403
from sandai_operator_client import __all__, __version__  # noqa: F401
