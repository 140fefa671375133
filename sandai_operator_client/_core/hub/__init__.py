"""The result hub: a sans-IO state (``state.py``, ``watch.py``, ``commands.py``), its connection
(``link.py``) and the reading that drives both (``driver.py``)."""

from .driver import HubStatistics, ResultHub
from .watch import Outcome, SubscriptionRefused, Watch

__all__ = ("HubStatistics", "Outcome", "ResultHub", "SubscriptionRefused", "Watch")
