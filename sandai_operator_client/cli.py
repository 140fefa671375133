"""``sandai-operator`` (also ``python -m sandai_operator_client``): talk to an operator from a shell.

Exit codes a script can use: 0 success; 1 a task failed (operator error, deadline, cancel, bad record);
2 bad arguments or input; 3 broker/backend unreachable; 4 timed out; 5 conformance check failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

from ._sync import OperatorClient
from .config import VALID_PRIORITIES
from .errors import InvalidTaskInputError, OperatorConnectionError, OperatorError, TaskTimeoutError
from .types import BatchTaskResult

__all__ = ("main",)

EXIT_OK, EXIT_TASK_FAILED, EXIT_USAGE, EXIT_CONNECTION, EXIT_TIMEOUT, EXIT_NONCONFORMANT = 0, 1, 2, 3, 4, 5


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="sandai-operator", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--broker-url", help="default: SANDAI_OPERATOR_CELERY_BROKER_URL or redis://localhost:6379/0")
    parser.add_argument("--result-backend", help="default: SANDAI_OPERATOR_CELERY_RESULT_BACKEND or the broker")
    parser.add_argument(
        "--task-serializer",
        choices=("msgpack", "json"),
        help="default: SANDAI_OPERATOR_CELERY_TASK_SERIALIZER or msgpack (json for SDK <= 0.4.0)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("operator")
        p.add_argument("version")
        return p

    def task_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--artifact",
            action="append",
            default=[],
            metavar="URI[#SLOT]",
            help="an input artifact (repeatable); #slot names its slot",
        )
        p.add_argument("--options", default="{}", help="options as a JSON object")
        p.add_argument("--priority", choices=VALID_PRIORITIES)
        p.add_argument("--timeout", type=float, help="seconds: the task's deadline and the wait")
        p.add_argument("--cancel-key")
        p.add_argument("--persistent-output", action="store_true")

    task_options(command("call", "submit a task and print its result"))
    task_options(command("submit", "submit a task and print its id"))
    get = command("get", "wait for a task's result envelope")
    get.add_argument("task_id")
    get.add_argument("--timeout", type=float)
    command("desc", "print the operator's description")
    probe = command("probe", "submit a test task and report what worked")
    probe.add_argument("--timeout", type=float, default=10)
    command("queues", "print queue names and pending counts per priority")
    cancel = command("cancel", "set a cancel key: operators skip tasks carrying it")
    cancel.add_argument("key")
    cancel.add_argument("--ttl", type=float)
    batch = command("batch", "submit JSON lines of {artifacts, options}; print JSON lines of results")
    batch.add_argument("file", help="JSON lines file, or - for standard input")
    batch.add_argument("--ordered", action="store_true", help="print in input order (default: completion order)")
    batch.add_argument("--output", help="write results here instead of standard output")
    batch.add_argument("--priority", choices=VALID_PRIORITIES)
    batch.add_argument("--timeout", type=float, help="one budget for the whole batch")
    batch.add_argument("--progress", choices=("auto", "always", "never"), default="auto")
    conformance = command("conformance", "check a live operator against the protocol")
    conformance.add_argument("--timeout", type=float, default=60)
    return parser


def _artifacts(values: Sequence[str]) -> List[Dict[str, Any]]:
    artifacts = []
    for value in values:
        uri, _, slot = value.partition("#")
        artifacts.append({"uri": uri, **({"slot": slot} if slot else {})})
    return artifacts


def _json_object(text: str, what: str) -> Dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidTaskInputError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidTaskInputError(f"{what} must be a JSON object")
    return value


def _print(value: Any, out: TextIO = sys.stdout) -> None:
    out.write(json.dumps(value, default=str, ensure_ascii=False) + "\n")


def _result_line(result: BatchTaskResult) -> Dict[str, Any]:
    line: Dict[str, Any] = {
        "index": result.index,
        "task_id": result.task_id,
        "submitted": result.submitted,
        "success": result.success,
    }
    if result.success:
        line.update(artifacts=result.artifacts, results=result.results)
    else:
        line["error"] = {"type": type(result.error).__name__, "message": str(result.error)}
    return line


def _read_batch(path: str) -> List[Tuple[Any, Any]]:
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    try:
        tasks = []
        for number, line in enumerate(stream, 1):
            if line.strip():
                item = _json_object(line, f"line {number}")
                tasks.append((item.get("artifacts", []), item.get("options", {})))
        return tasks
    finally:
        if stream is not sys.stdin:
            stream.close()


class _Progress:
    """A one-line progress bar with rate and ETA on a terminal (standard error)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done, self.failed = total, enabled, 0, 0
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, result: BatchTaskResult) -> None:
        self.done += 1
        self.failed += not result.success
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.done == self.total):
            self._last = now
            elapsed = max(now - self.started, 1e-9)
            rate = self.done / elapsed
            eta = (self.total - self.done) / rate if rate else 0.0
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            sys.stderr.write(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                f"{rate:,.0f}/s ETA {eta:,.1f}s failed {self.failed}"
            )
            if self.done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def _batch(client: OperatorClient, args: argparse.Namespace) -> int:
    tasks = _read_batch(args.file)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    progress = _Progress(len(tasks), args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty()))
    ordered: List[Optional[BatchTaskResult]] = [None] * len(tasks)
    next_index = 0
    failed = 0
    results = client.batch_iter(tasks, priority=args.priority, timeout=args.timeout)
    try:
        for result in results:
            progress.update(result)
            failed += not result.success
            if not args.ordered:
                _print(_result_line(result), out)
                continue
            ordered[result.index] = result
            while next_index < len(ordered) and ordered[next_index] is not None:
                _print(_result_line(ordered[next_index]), out)  # type: ignore[arg-type]
                next_index += 1
    finally:
        results.close()  # type: ignore[attr-defined]  # never left to interpreter shutdown
        if out is not sys.stdout:
            out.close()
    return EXIT_OK if failed == 0 else EXIT_TASK_FAILED


def _run(args: argparse.Namespace) -> int:
    with OperatorClient(
        args.operator,
        args.version,
        broker_url=args.broker_url,
        result_backend=args.result_backend,
        task_serializer=args.task_serializer,
    ) as client:
        if args.command in ("call", "submit"):
            controls = dict(
                priority=args.priority,
                timeout=args.timeout,
                cancel_key=args.cancel_key,
                persistent_output=args.persistent_output,
            )
            artifacts, options = _artifacts(args.artifact), _json_object(args.options, "--options")
            if args.command == "submit":
                print(client.async_call(artifacts, options, **controls).id)
            else:
                out_artifacts, results = client.sync(artifacts, options, **controls)
                _print({"artifacts": out_artifacts, "results": results})
        elif args.command == "get":
            _print(client.handle(args.task_id).get(timeout=args.timeout))
        elif args.command == "desc":
            _print(client.desc)
        elif args.command == "probe":
            health = client.probe(timeout=args.timeout)
            _print(health.__dict__)
            if not health.submit_ok:
                return EXIT_CONNECTION
            return EXIT_OK if health.response_ok else EXIT_TASK_FAILED
        elif args.command == "queues":
            depth = client.queue_depth()
            _print({p: {"queue": q, "pending": depth.get(p)} for p, q in client.get_queue_info().items()})
        elif args.command == "cancel":
            client.cancel(args.key, args.ttl)
        elif args.command == "batch":
            return _batch(client, args)
        elif args.command == "conformance":
            from .testing.conformance import run_conformance

            report = run_conformance(client, timeout=args.timeout)
            print(report.render())
            return EXIT_OK if report.passed else EXIT_NONCONFORMANT
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (InvalidTaskInputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OperatorConnectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONNECTION
    except TaskTimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    except OperatorError as exc:
        _print(
            {
                "error": {
                    "type": type(exc).__name__,
                    "message": str(exc),
                    "details": getattr(exc, "error_details", None),
                }
            },
            sys.stderr,
        )
        return EXIT_TASK_FAILED
    except KeyboardInterrupt:
        return 130
