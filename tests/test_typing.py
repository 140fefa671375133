"""The public API as a type checker sees it: a user's program passes ``mypy --strict`` through both import
paths and the seed's submodules, its mistakes are caught, and the two facades have the same signatures."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

from sandai_operator_client import AsyncOperatorClient, AsyncTaskHandle, OperatorClient, TaskHandle

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = Path(__file__).resolve().parent / "typing"


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, List[str]]:
    """mypy --strict over the two programs, once: file name -> its error lines."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            "pyproject.toml",
            "--cache-dir",
            str(tmp_path_factory.mktemp("mypy")),
            "--no-error-summary",
            "--hide-error-context",
            str(PROGRAMS / "user_program.py"),
            str(PROGRAMS / "user_mistakes.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors: Dict[str, List[str]] = {"user_program.py": [], "user_mistakes.py": []}
    for line in run.stdout.splitlines():
        if ": error: " in line:
            errors.setdefault(Path(line.split(":", 1)[0]).name, []).append(line)
    assert run.returncode in (0, 1), run.stdout + run.stderr
    return errors


def test_a_user_program_passes_mypy_strict_through_every_import_path(mypy_errors: Dict[str, List[str]]) -> None:
    assert mypy_errors["user_program.py"] == []


def test_a_user_programs_mistakes_are_caught(mypy_errors: Dict[str, List[str]]) -> None:
    source = (PROGRAMS / "user_mistakes.py").read_text().splitlines()
    marked = {n + 1: line.split("# E: ", 1)[1] for n, line in enumerate(source) if "# E: " in line}
    found: Dict[int, str] = {}
    for error in mypy_errors["user_mistakes.py"]:
        match = re.match(r".*?:(\d+): error: (.*)", error)
        assert match, error
        found[int(match.group(1))] = match.group(2)
    assert set(found) == set(marked), mypy_errors["user_mistakes.py"]
    for number, expected in marked.items():
        assert expected in found[number], (number, found[number])


def _public(cls: type) -> Set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


@pytest.mark.parametrize("sync_cls, async_cls", [(OperatorClient, AsyncOperatorClient), (TaskHandle, AsyncTaskHandle)])
def test_the_two_facades_have_the_same_signatures(sync_cls: type, async_cls: type) -> None:
    # the same names with the same parameters; what may block is a coroutine on the async side
    # (the seed's: close/aclose; the blocking handle's Celery spellings; desc a property on the blocking side)
    only_sync = {"close"} if sync_cls is OperatorClient else {"status", "successful", "failed"}
    only_async = {"aclose"} if async_cls is AsyncOperatorClient else set()
    assert _public(sync_cls) - only_sync == _public(async_cls) - only_async, _public(sync_cls) ^ _public(async_cls)
    for name in sorted(_public(sync_cls) - only_sync):
        sync_member, async_member = inspect.getattr_static(sync_cls, name), inspect.getattr_static(async_cls, name)
        if not callable(sync_member) or isinstance(sync_member, type):
            continue
        sync_params = list(inspect.signature(sync_member).parameters.values())
        async_params = list(inspect.signature(async_member).parameters.values())
        shape = [(p.name, p.kind, p.default) for p in sync_params]
        assert shape == [(p.name, p.kind, p.default) for p in async_params], name
        assert not inspect.iscoroutinefunction(sync_member), name
