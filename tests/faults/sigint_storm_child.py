"""Run back-to-back blocking sync() calls while the parent sends SIGINT every few milliseconds; print what
the calls returned as JSON: how many returned their own result, another task's (must be none), a typed
error, an interrupt, or anything else (must be none)."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import Counter
from typing import Any

from sandai_operator_client import OperatorError, create_client


def calls(client: Any, counts: Counter[str], until: float) -> None:
    while time.monotonic() < until:
        try:
            counts["started"] += 1
            text = f"s{counts['started']}"
            result = client.sync([], {"text": text}, timeout=20)
            counts["own" if result[1].get("echo") == text else "foreign"] += 1
        except KeyboardInterrupt:
            counts["interrupted"] += 1
        except OperatorError as exc:
            counts[f"typed {type(exc).__name__}"] += 1
        except BaseException as exc:  # the finding: nothing else may reach a caller
            counts[f"untyped {exc!r}"[:120]] += 1


def main() -> None:
    name, url, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    counts: Counter[str] = Counter()
    with create_client(name, "v1", broker_url=url, timeout=20) as client:
        client.sync([], {"text": "warm"}, timeout=20)
        until = time.monotonic() + seconds + 1  # the parent stops signalling after ``seconds``
        ready = False
        while True:
            try:  # an interrupt may land between calls too, even in an except clause
                if not ready:
                    ready = True
                    print("ready", flush=True)
                if time.monotonic() >= until:
                    break
                calls(client, counts, until)
            except KeyboardInterrupt:
                counts["interrupted between calls"] += 1
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        time.sleep(0.5)  # signals still in flight
        check = client.sync([], {"text": "last"}, timeout=20)  # the client still works, and is not off by one
        counts["last own" if check[1].get("echo") == "last" else "last foreign"] += 1
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
