"""sandai-operator (also python -m sandai_operator_client): talk to a Sandai operator from a shell.

Exit codes: 0 success; 1 a task failed (operator error, deadline, cancel, bad record); 2 bad arguments or
input (nothing was sent); 3 broker or backend unreachable; 4 timed out; 5 conformance check failed;
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, TextIO

from ._cli_batch import BatchOutcome, Progress, json_object, new_cancel_key, read_tasks, run_batch
from ._sync import OperatorClient
from .config import VALID_PRIORITIES
from .errors import InvalidTaskInputError, OperatorConnectionError, OperatorError, TaskTimeoutError

__all__ = ("main",)

EXIT_OK, EXIT_TASK_FAILED, EXIT_USAGE, EXIT_CONNECTION, EXIT_TIMEOUT, EXIT_NONCONFORMANT = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130
DEFAULT_WAIT = 60.0
"""Seconds a command waits by default (the library's default, 28,800, is for services, not shells)."""

_EXAMPLES = {
    "call": 'sandai-operator call echo v1 --artifact s3://b/in.mp4#video --options \'{"text": "hi"}\'',
    "submit": "sandai-operator submit echo v1 --options '{}'      # prints the task id",
    "get": "sandai-operator get echo v1 TASK_ID --timeout 30",
    "desc": "sandai-operator desc echo v1",
    "probe": "sandai-operator probe echo v1 --timeout 5",
    "queues": "sandai-operator queues echo v1",
    "cancel": "sandai-operator cancel echo v1 job-42 --ttl 3600",
    "batch": "sandai-operator batch echo v1 tasks.jsonl --ordered --output results.jsonl",
    "conformance": "sandai-operator conformance echo v1 --timeout 10",
}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs kept as written; a default shown where it says something."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS, []) and "default" not in text:
            text += " (default: %(default)s)"
        return text


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="sandai-operator",
        description=__doc__,
        formatter_class=_Formatter,
        epilog="Example:\n  " + _EXAMPLES["call"] + "\n\nEach command has --help.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--broker-url", help="default: SANDAI_OPERATOR_CELERY_BROKER_URL or redis://localhost:6379/0")
    parser.add_argument("--result-backend", help="default: SANDAI_OPERATOR_CELERY_RESULT_BACKEND or the broker")
    parser.add_argument(
        "--task-serializer",
        choices=("msgpack", "json"),
        help="default: SANDAI_OPERATOR_CELERY_TASK_SERIALIZER or msgpack (json for SDK <= 0.4.0)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, wait: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=_Formatter,
            epilog=f"Example:\n  {_EXAMPLES[name]}\n\nExit codes: see sandai-operator --help.",
        )
        p.add_argument("operator", help="the operator's name")
        p.add_argument("version", help="the operator's version, e.g. v1")
        if wait:
            p.add_argument("--timeout", type=float, default=DEFAULT_WAIT, help=wait)
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
        p.add_argument("--priority", choices=VALID_PRIORITIES, default="normal", help="the task's queue")
        p.add_argument("--cancel-key", help="operators skip the task once this Redis key exists")
        p.add_argument("--persistent-output", action="store_true", help="ask the operator to keep its outputs")

    task_options(command("call", "submit a task and print its result", "seconds: the task's deadline and the wait"))
    submit = command("submit", "submit a task and print its id")
    task_options(submit)
    submit.add_argument("--timeout", type=float, default=28800, help="seconds: the task's deadline")
    command("get", "wait for a task's result envelope", "seconds to wait").add_argument("task_id")
    command("desc", "print the operator's description", "seconds to wait")
    command("probe", "submit a test task and report what worked", "seconds to wait")
    command("queues", "print queue names and pending counts per priority")
    cancel = command("cancel", "set a cancel key: operators skip tasks carrying it")
    cancel.add_argument("key")
    cancel.add_argument("--ttl", type=float, help="seconds the key lives (default: a day)", default=86400)
    batch = command(
        "batch",
        "submit JSON lines of {artifacts, options}; print JSON lines of results",
        "seconds: every task's deadline and one budget for the whole batch",
    )
    batch.add_argument("file", help="JSON lines file, or - for standard input")
    batch.add_argument("--ordered", action="store_true", help="print in input order (default: completion order)")
    batch.add_argument("--output", help="write results here instead of standard output")
    batch.add_argument("--priority", choices=VALID_PRIORITIES, default="normal", help="the tasks' queue")
    batch.add_argument("--cancel-key", help="tag every task with this key (default: a new one; Ctrl-C sets it)")
    batch.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar on standard error (auto: when it is a terminal)",
    )
    command("conformance", "check a live operator against the protocol", "seconds each check waits")
    return parser


def _artifacts(values: Sequence[str]) -> List[Dict[str, Any]]:
    artifacts = []
    for value in values:
        uri, _, slot = value.partition("#")
        artifacts.append({"uri": uri, **({"slot": slot} if slot else {})})
    return artifacts


def _print(value: Any, out: TextIO = sys.stdout) -> None:
    out.write(json.dumps(value, default=str, ensure_ascii=False) + "\n")


def _batch(client: OperatorClient, args: argparse.Namespace) -> int:
    tasks = read_tasks(args.file)  # all of it checked before anything is sent
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    outcome = BatchOutcome(len(tasks))
    progress = Progress(outcome, args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty()))
    cancel_key = args.cancel_key or new_cancel_key()
    try:
        run_batch(
            client,
            tasks,
            ordered=args.ordered,
            out=out,
            progress=progress,
            priority=args.priority,
            timeout=args.timeout,
            cancel_key=cancel_key,
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: {outcome.done} of {len(tasks)} tasks done, {outcome.failed} failed; operators "
            f"skip the rest (cancel key {cancel_key})",
            file=sys.stderr,
        )
        raise
    finally:
        if out is not sys.stdout:
            out.close()
    if outcome.ok == outcome.total:
        return EXIT_OK
    if outcome.kinds.get("timeout") == outcome.total:
        return EXIT_TIMEOUT
    if outcome.kinds.get("connection") == outcome.total:
        return EXIT_CONNECTION
    return EXIT_TASK_FAILED


def _run(args: argparse.Namespace) -> int:
    with OperatorClient(
        args.operator,
        args.version,
        broker_url=args.broker_url,
        result_backend=args.result_backend,
        task_serializer=args.task_serializer,
        timeout=getattr(args, "timeout", DEFAULT_WAIT),
    ) as client:
        if args.command in ("call", "submit"):
            controls = dict(
                priority=args.priority,
                timeout=args.timeout,
                cancel_key=args.cancel_key,
                persistent_output=args.persistent_output,
            )
            artifacts, options = _artifacts(args.artifact), json_object(args.options, "--options")
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
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly (the Python docs' recipe)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_TASK_FAILED
    except OSError as exc:  # a file that cannot be read or written
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_USAGE
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
        details = getattr(exc, "error_details", None)
        _print({"error": {"type": type(exc).__name__, "message": str(exc), "details": details}}, sys.stderr)
        return EXIT_TASK_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
