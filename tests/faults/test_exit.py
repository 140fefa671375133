"""Nothing blocks interpreter exit: an iterator left open by an exception, a CLI whose reader went away."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from .conftest import operator_process

HERE = Path(__file__).resolve().parent


@pytest.fixture
def operator(redis_url: str, sandai_operator_name: str) -> Iterator[str]:
    with operator_process(sandai_operator_name, redis_url, stderr=subprocess.DEVNULL):
        yield sandai_operator_name


def test_an_exception_out_of_a_named_iterator_does_not_hang_exit(operator: str, redis_url: str) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(HERE / "exit_child.py"), operator, redis_url], capture_output=True, text=True, timeout=60
    )
    assert time.monotonic() - started < 5, "the process did not exit promptly"
    assert "leaving with the iterator open" in done.stderr and done.returncode == 1


def test_a_batch_piped_into_head_exits(operator: str, redis_url: str, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"artifacts": [], "options": {"text": str(i)}}) + "\n" for i in range(200)))
    cli = f"{sys.executable} -m sandai_operator_client"
    started = time.monotonic()
    done = subprocess.run(
        f"{cli} --broker-url {redis_url} batch {operator} v1 {tasks} --timeout 30 | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - started < 5, "the pipeline did not exit promptly"
    assert json.loads(done.stdout.splitlines()[0])["task_id"]
