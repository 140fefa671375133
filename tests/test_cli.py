"""The console script as a shell runs it (a subprocess): exit codes, one line per failure, pipes that
close, Ctrl-C mid-batch, help."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest
import redis

from sandai_operator_client.testing import Delay, Echo, FakeOperator

SCRIPT = shutil.which("sandai-operator") or str(Path(sys.executable).with_name("sandai-operator"))


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=timeout)


def _tasks(path: Path, count: int, **options: object) -> Path:
    path.write_text("".join(json.dumps({"options": {"text": str(i), **options}}) + "\n" for i in range(count)))
    return path


def test_batch_piped_to_head_exits_quietly(fake_operator: FakeOperator, tmp_path: Path) -> None:
    tasks = _tasks(tmp_path / "tasks.jsonl", 300)
    command = f"'{SCRIPT}' --broker-url {fake_operator.broker_url} batch {fake_operator.name} v1 {tasks} | head -1"
    run = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
    assert json.loads(run.stdout)["success"] is True
    assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr, run.stderr


def test_a_missing_file_is_one_line_and_exit_2(fake_operator: FakeOperator, tmp_path: Path) -> None:
    run = _run("--broker-url", fake_operator.broker_url, "batch", fake_operator.name, "v1", str(tmp_path / "nope"))
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and "No such file" in run.stderr, run.stderr


@pytest.mark.parametrize(
    "line, says",
    [
        ('{"option": {"text": "typo"}}', "unknown keys ['option']"),
        ('{"options": [1]}', "options must be a dict"),
        ('{"artifacts": [{"slot": "x"}]}', "'uri'"),
        ("not json", "not JSON"),
    ],
)
def test_a_bad_line_is_exit_2_and_nothing_is_sent(
    fake_operator: FakeOperator, tmp_path: Path, redis_admin: redis.Redis, line: str, says: str
) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"options": {"text": "good"}}\n' + line + "\n")
    run = _run("--broker-url", fake_operator.broker_url, "batch", fake_operator.name, "v1", str(tasks))
    assert run.returncode == 2 and says in run.stderr and "line 2" in run.stderr, run.stderr
    time.sleep(0.3)  # what was sent would have been taken by now
    assert fake_operator.received == []
    assert sum(redis_admin.llen(q) for q in fake_operator.queues) == 0


def test_a_dead_broker_is_exit_3_and_one_line(tmp_path: Path) -> None:
    tasks = _tasks(tmp_path / "tasks.jsonl", 50)
    run = _run("--broker-url", "redis://127.0.0.1:1/0", "batch", "nobody", "v1", str(tasks))
    assert run.returncode == 3 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: "), run.stderr


def test_a_batch_nobody_answers_is_exit_4(redis_url: str, sandai_operator_name: str, tmp_path: Path) -> None:
    tasks = _tasks(tmp_path / "tasks.jsonl", 3)
    try:
        run = _run("--broker-url", redis_url, "batch", sandai_operator_name, "v1", str(tasks), "--timeout", "0.5")
        assert run.returncode == 4, run.stderr
        assert [json.loads(line)["error"]["type"] for line in run.stdout.splitlines()] == ["TaskTimeoutError"] * 3
    finally:
        admin = redis.Redis.from_url(redis_url)
        for key in admin.scan_iter(match=f"*{sandai_operator_name}*"):
            admin.delete(key)


def test_a_negative_timeout_is_exit_2_and_nothing_is_sent(fake_operator: FakeOperator, tmp_path: Path) -> None:
    tasks = _tasks(tmp_path / "tasks.jsonl", 2)
    run = _run(
        "--broker-url", fake_operator.broker_url, "batch", fake_operator.name, "v1", str(tasks), "--timeout", "-1"
    )
    assert run.returncode == 2 and "timeout" in run.stderr, run.stderr
    time.sleep(0.3)
    assert fake_operator.received == []


def test_ctrl_c_mid_batch_cancels_the_rest_and_summarises(
    redis_url: str, sandai_operator_name: str, tmp_path: Path
) -> None:
    operator = FakeOperator(
        sandai_operator_name, broker_url=redis_url, behaviour=lambda p: Delay(0.2, Echo()), prefetch=1, concurrency=1
    )
    tasks = _tasks(tmp_path / "tasks.jsonl", 20)
    with operator.in_thread():
        proc = subprocess.Popen(
            [SCRIPT, "--broker-url", redis_url, "batch", sandai_operator_name, "v1", str(tasks)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        lines: List[str] = [proc.stdout.readline(), proc.stdout.readline()]  # two results are in
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "interrupted:" in err and "operators skip the rest" in err, err
        done = len(lines) + len(out.splitlines())
        deadline = time.monotonic() + 30
        while len(operator.received) < 20 and time.monotonic() < deadline:  # the operator drains the queue
            time.sleep(0.05)
        time.sleep(0.3)
    assert len(operator.received) == 20
    assert len(operator.skipped) >= 20 - done - 2  # at most the ones already taken still ran


def test_help_shows_defaults_exit_codes_and_an_example() -> None:
    top = _run("--help")
    assert "Exit codes:" in top.stdout and "130 interrupted" in top.stdout and "``" not in top.stdout
    batch = _run("batch", "--help")
    assert "(default: 60.0)" in batch.stdout and "Example:" in batch.stdout and "sandai-operator batch" in batch.stdout
    assert _run("--version").stdout.startswith("sandai-operator ")


def test_every_waiting_command_waits_60_seconds_by_default() -> None:
    from sandai_operator_client.cli import _parser

    parser = _parser()
    for command in ("call", "get", "desc", "probe", "batch", "conformance"):
        extra = ["t"] if command == "get" else (["f"] if command == "batch" else [])
        assert parser.parse_args([command, "x", "v1", *extra]).timeout == 60.0, command


@pytest.fixture(autouse=True)
def _unbuffered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    monkeypatch.delenv("SANDAI_OPERATOR_CELERY_BROKER_URL", raising=False)
    assert os.environ["PYTHONUNBUFFERED"] == "1"


def test_the_progress_bar_shows_no_eta_until_it_means_something(capsys: pytest.CaptureFixture[str]) -> None:
    from sandai_operator_client._cli_batch import BatchOutcome, Progress
    from sandai_operator_client.types import BatchTaskResult

    progress = Progress(BatchOutcome(1000), enabled=True)
    progress.outcome.add(BatchTaskResult(index=0, task_id="t", submitted=True))
    progress.show()
    first = capsys.readouterr().err
    assert "1/1000" in first and "ETA --" in first  # one task in: no guess (was "ETA 328.6s")
    progress.started -= 1.0  # a second later, a tenth of the tasks in
    for i in range(1, 100):
        progress._last = 0.0
        progress.outcome.add(BatchTaskResult(index=i, task_id="t", submitted=True))
        progress.show()
    later = capsys.readouterr().err.rsplit("\r", 1)[-1]
    assert "100/1000" in later and "ETA --" not in later and "s failed 0" in later
