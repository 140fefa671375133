"""The library's logger, ``logging.getLogger("sandai_operator_client")``; the library installs no handler.

WARNING: a connection lost and re-established (with the attempts, the time and the channels re-subscribed),
a reconnect given up, a publish whose connection was cut and how it was settled, a result record that
cannot be decoded. INFO: a client opened or closed (URLs without passwords). DEBUG: each task submitted,
answered, its result key deleted. With DEBUG off a task costs one level check per line, no formatting.
"""

from __future__ import annotations

import logging

__all__ = ("logger",)

logger = logging.getLogger("sandai_operator_client")
