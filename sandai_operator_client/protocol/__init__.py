"""The sans-IO protocol layer: pure functions and small values, bytes in, values out.

No sockets, no anyio, no clock and no uuid it was not given; tested against golden captures of the real
Celery, seed client and operator SDK (``protocol_fixtures/``).
"""
