"""Leave a loop over a named blocking batch iterator by an exception, as a script would, and let the
interpreter exit with the iterator (and the client) still alive: it must exit promptly."""

from __future__ import annotations

import sys

from sandai_operator_client import create_client

client = create_client(sys.argv[1], "v1", broker_url=sys.argv[2], timeout=30)
results = client.batch_iter([([], {"text": str(i)}) for i in range(20)], timeout=30)
for result in results:
    raise SystemExit(f"leaving with the iterator open after task {result.index}")
