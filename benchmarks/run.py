"""Benchmarks side by side: this project, the seed client 0.4.6, and bare redis-py (the wire limit).

``make bench`` (or ``python benchmarks/run.py [--rounds N] [--only W,...] [--baseline REV]``). Every
workload runs for all implementations in the same run, against the same Redis and the same fast operator
(the FakeOperator in its own process), interleaved round by round; the table shows medians over rounds and
ratios to the seed.
The seed client runs in its own virtualenv (``benchmarks/.venvs/seed``, built on first use).
``--baseline REV`` adds ``base``: this project at commit REV (a git worktree under ``benchmarks/.venvs``),
run like ``ours`` in the same rounds, so a change is measured against the code before it (``ours/base``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SEED_VENV = HERE / ".venvs" / "seed"
REDIS_URL = os.environ.get("SANDAI_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("SANDAI_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")

# workload -> (metric, higher is better, implementations)
WORKLOADS = {
    "sequential": ("p50_ms", False, ("ours", "seed", "bare")),
    "submit": ("per_s", True, ("ours", "seed", "bare", "raw")),  # raw: a plain socket, the round-trip floor
    "submit_async": ("per_s", True, ("ours", "seed", "bare")),
    "batch": ("per_s", True, ("ours", "seed", "bare")),
    "concurrent": ("per_s", True, ("ours", "seed")),
    "concurrent_trio": ("per_s", True, ("ours",)),
    "import": ("import_ms", False, ("ours", "seed", "bare")),
    "amqp_sequential": ("p50_ms", False, ("ours", "seed")),
    "amqp_batch": ("per_s", True, ("ours", "seed")),
}


def ours_python() -> str:
    """This project with its runtime dependencies only (and trio), as a user installs it.

    Not the development venv: its extras (OpenTelemetry, test tools) would be loaded and paid for.
    """
    venv = HERE / ".venvs" / "ours"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", f"{ROOT}[trio]"], check=True)
        (venv / ".installed").touch()
    return str(python)


def seed_python() -> str:
    python = SEED_VENV / "bin" / "python"
    if not (SEED_VENV / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", str(SEED_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "sandai-operator-client==0.4.6", "packaging"], check=True
        )
        (SEED_VENV / ".installed").touch()
    return str(python)


BASELINE: list = []  # [worktree path] when --baseline is given


def baseline_tree(rev: str) -> Path:
    """A worktree of this repository at ``rev`` (made once)."""
    tree = HERE / ".venvs" / f"baseline-{rev}"
    if not tree.exists():
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True, capture_output=True
        )
    return tree


def run_one(impl: str, workload: str) -> dict:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    broker = AMQP_URL if workload.startswith("amqp") else REDIS_URL
    operator = subprocess.Popen([sys.executable, str(HERE / "fast_operator.py"), name, broker, REDIS_URL])
    try:
        time.sleep(0.5)
        python = {"seed": seed_python, "ours": ours_python, "base": ours_python}.get(impl, lambda: sys.executable)()
        env = dict(os.environ, PYTHONPATH=str(HERE))
        if impl == "base":  # the baseline's package shadows the editable install of this tree
            env["PYTHONPATH"] = f"{BASELINE[0]}{os.pathsep}{HERE}"
        out = subprocess.run(
            [python, str(HERE / "workloads.py"), "ours" if impl == "base" else impl, workload, name, REDIS_URL, broker],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{impl} {workload} failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
    finally:
        operator.terminate()
        operator.wait()
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(match=f"*{name}*"):
            r.delete(key)
        if broker != REDIS_URL:
            import kombu

            with kombu.Connection(broker) as connection:
                channel = connection.channel()
                for priority in ("high", "normal", "low", "very_low"):
                    channel.queue_delete(f"{priority}.{name}.v1")
                    channel.exchange_delete(f"{priority}.{name}.v1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(WORKLOADS))
    parser.add_argument("--baseline", help="also run this project at this git revision, as 'base'")
    parser.add_argument(
        "--output",
        help="write the results here (default: results/<UTC time>.json, not kept by "
        "git; results/latest.json is a copy)",
    )
    args = parser.parse_args()
    chosen = args.only.split(",")
    if args.baseline:
        BASELINE.append(baseline_tree(args.baseline))
        for workload, (metric, higher, impls) in list(WORKLOADS.items()):
            if "ours" in impls:
                WORKLOADS[workload] = (metric, higher, (*impls, "base"))
    samples: dict = {}
    for round_no in range(args.rounds):
        for workload in chosen:
            for impl in WORKLOADS[workload][2]:
                try:
                    result = run_one(impl, workload)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:  # recorded, not fatal: say so
                    result = {"failed": str(exc).strip().splitlines()[-1][:300]}
                samples.setdefault((workload, impl), []).append(result)
                print(f"round {round_no + 1} {workload:16} {impl:5} {result}", flush=True)
    rows = []
    for workload in chosen:
        metric, _higher, impls = WORKLOADS[workload]
        ok = {impl: [s for s in samples[(workload, impl)] if "failed" not in s] for impl in impls}
        failed = {impl: [s["failed"] for s in samples[(workload, impl)] if "failed" in s] for impl in impls}
        ok = {impl: runs for impl, runs in ok.items() if runs}
        med = {impl: statistics.median(s[metric] for s in runs) for impl, runs in ok.items()}
        extra = {impl: statistics.median(s.get("p99_ms", 0) for s in runs) for impl, runs in ok.items()}
        rss = {impl: statistics.median(s["peak_rss_mb"] for s in runs) for impl, runs in ok.items()}
        socks = {impl: runs[-1].get("sockets") for impl, runs in ok.items()}
        rows.append(
            {
                "workload": workload,
                "metric": metric,
                "median": med,
                "p99_ms": extra,
                "peak_rss_mb": rss,
                "sockets": socks,
                "failed": {impl: f for impl, f in failed.items() if f},
                "ours_vs_seed": (med["ours"] / med["seed"]) if "seed" in med and "ours" in med else None,
                "ours_vs_bare": (med["ours"] / med["bare"]) if "bare" in med and "ours" in med else None,
                "raw_vs_seed": (med["raw"] / med["seed"]) if "raw" in med and "seed" in med else None,
                "ours_vs_base": (med["ours"] / med["base"]) if "base" in med and "ours" in med else None,
            }
        )
    print()
    print(
        f"{'workload':16} {'metric':10} {'ours':>10} {'seed':>10} {'bare':>10} {'ours/seed':>10} {'ours/bare':>10}"
        f" {'raw/seed':>10} {'ours/base':>10}"
    )
    for row in rows:
        m = row["median"]
        fmt = lambda v: f"{v:10.2f}" if isinstance(v, (int, float)) else f"{'-':>10}"  # noqa: E731
        print(
            f"{row['workload']:16} {row['metric']:10} {fmt(m.get('ours'))} {fmt(m.get('seed'))} "
            f"{fmt(m.get('bare'))} {fmt(row['ours_vs_seed'])} {fmt(row['ours_vs_bare'])} {fmt(row['raw_vs_seed'])}"
            f" {fmt(row['ours_vs_base'])}"
        )
        for impl, reasons in row["failed"].items():
            print(f"{'':16} {impl} failed {len(reasons)} of {args.rounds} run(s): {reasons[0]}")
    (HERE / "results").mkdir(exist_ok=True)
    text = (
        json.dumps(
            {
                "rounds": args.rounds,
                "python": sys.version.split()[0],
                "rows": rows,
                "samples": {f"{workload}/{impl}": runs for (workload, impl), runs in samples.items()},
            },
            indent=2,
        )
        + "\n"
    )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    output = Path(args.output) if args.output else HERE / "results" / f"{stamp}.json"
    output.write_text(text)
    (HERE / "results" / "latest.json").write_text(text)
    print(f"results: {output}")


if __name__ == "__main__":
    main()
