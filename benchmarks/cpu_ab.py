"""CPU time of one blocking call, this tree against a baseline revision, runs alternating.

``python benchmarks/cpu_ab.py --baseline REV [--workload sync|submit] [--runs N]``. Throughput on a
2-core machine moves 20-30 % from run to run with whatever else runs; the client process's CPU time per
call (``time.process_time``) moves far less, so a small cost on the hot path shows here first. ``sync``
needs an operator: the fast operator runs in a process of its own for each run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

from run import HERE, REDIS_URL, ROOT, baseline_tree

CALLS = {"sync": 1000, "submit": 3000}
CODE = """
import json, sys, time
from sandai_operator_client import create_client
name, workload, url, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with create_client(name, "v1", broker_url=url, timeout=30) as client:
    call = client.sync if workload == "sync" else client.async_call
    for _ in range(20):
        call([], {"text": "warm"})
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        call([], {"text": "x"})
    print(json.dumps({"cpu_us": (time.process_time() - cpu) / calls * 1e6,
                      "wall_us": (time.perf_counter() - wall) / calls * 1e6}))
"""


def one_run(tree: Path, workload: str, name: str) -> Dict[str, float]:
    operator = None
    if workload == "sync":
        operator = subprocess.Popen([sys.executable, str(HERE / "fast_operator.py"), name, REDIS_URL, REDIS_URL])
        time.sleep(0.5)
    try:
        out = subprocess.run(
            [sys.executable, "-c", CODE, name, workload, REDIS_URL, str(CALLS[workload])],
            env=dict(os.environ, PYTHONPATH=str(tree)),
            capture_output=True,
            text=True,
            check=True,
            cwd=str(HERE),
        )
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait()
        import redis

        admin = redis.Redis.from_url(REDIS_URL)
        for key in admin.scan_iter(match=f"*{name}*"):
            admin.delete(key)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", required=True, help="the git revision to compare with")
    parser.add_argument("--workload", choices=sorted(CALLS), default="sync")
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    trees = {"ours": ROOT, "base": baseline_tree(args.baseline)}
    results: Dict[str, List[Dict[str, float]]] = {"ours": [], "base": []}
    for run in range(args.runs):
        order = ("ours", "base") if run % 2 == 0 else ("base", "ours")
        for impl in order:
            results[impl].append(one_run(trees[impl], args.workload, f"cpu-ab-{impl}-{run}-{os.getpid()}"))
    for impl, runs in results.items():
        cpu = [r["cpu_us"] for r in runs]
        wall = [r["wall_us"] for r in runs]
        print(
            f"{impl}: cpu {statistics.median(cpu):.1f} us/call (runs {min(cpu):.0f}-{max(cpu):.0f}),"
            f" wall {statistics.median(wall):.1f} us/call (runs {min(wall):.0f}-{max(wall):.0f})"
        )


if __name__ == "__main__":
    main()
