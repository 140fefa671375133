"""The seed's ``sandai.operator_client.exceptions``: every error (the seed's, and this client's additions)."""

from sandai_operator_client.errors import *  # noqa: F403
from sandai_operator_client.errors import __all__ as __all__
