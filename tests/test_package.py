"""The package surface: lazy public names, the ``sandai.operator_client`` alias, task id generation."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from typing import List

import pytest

import sandai_operator_client
from sandai_operator_client._core.ids import new_uuid4


def _modules_after(code: str) -> List[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def test_importing_the_package_loads_only_the_errors() -> None:
    baseline = set(_modules_after("pass"))  # what the interpreter (and site) loaded anyway
    added = sorted(set(_modules_after("import sandai_operator_client")) - baseline)
    assert added == ["sandai_operator_client", "sandai_operator_client.errors"]


def test_first_use_of_a_name_loads_what_it_needs() -> None:
    loaded = _modules_after("from sandai_operator_client import create_client")
    assert "sandai_operator_client._sync" in loaded and "anyio" in loaded


def test_msgpack_is_loaded_by_its_first_use_not_by_a_client() -> None:
    client = (
        "from sandai_operator_client import create_client\n"
        "client = create_client('x', 'v1', broker_url='redis://127.0.0.1:1/0', result_backend='redis://127.0.0.1:1/0')"
    )
    assert "msgpack" not in _modules_after(client)
    used = (
        "from sandai_operator_client.protocol.serialization import dumps, loads\n"
        "assert loads(dumps({'a': [1]}, 'msgpack'), 'msgpack', ('msgpack',)) == {'a': [1]}"
    )
    assert "msgpack" in _modules_after(used)


def test_asyncio_is_loaded_by_a_blocking_clients_first_call_not_by_the_client(redis_url: str) -> None:
    client = (
        f"from sandai_operator_client import create_client\nclient = create_client('x', 'v1', broker_url={redis_url!r})"
    )
    assert "asyncio" not in _modules_after(client)
    assert "asyncio" in _modules_after(f"{client}\nclient.get_queue_info()\nclient.close()")


def test_every_public_name_resolves_and_is_listed() -> None:
    for name in sandai_operator_client.__all__:
        assert getattr(sandai_operator_client, name) is not None, name
    assert set(sandai_operator_client.__all__) <= set(dir(sandai_operator_client))
    with pytest.raises(AttributeError, match="no_such_name"):
        sandai_operator_client.no_such_name  # noqa: B018


def test_seed_import_path_is_an_alias() -> None:
    import sandai.operator_client as alias
    from sandai.operator_client import AsyncOperatorClient, OperatorClient, TaskTimeoutError, create_client

    assert create_client is sandai_operator_client.create_client
    assert OperatorClient is sandai_operator_client.OperatorClient
    assert AsyncOperatorClient is sandai_operator_client.AsyncOperatorClient
    assert TaskTimeoutError is sandai_operator_client.TaskTimeoutError
    assert alias.__all__ == sandai_operator_client.__all__
    assert alias.__version__ == sandai_operator_client.__version__
    assert set(alias.__all__) <= set(dir(alias))
    with pytest.raises(AttributeError):
        alias.no_such_name  # noqa: B018
    namespace: dict = {}
    exec("from sandai.operator_client import *", namespace)
    assert set(sandai_operator_client.__all__) <= set(namespace)


def test_task_ids_are_uuid4_and_unique_across_threads() -> None:
    ids: List[str] = []
    lock = threading.Lock()

    def draw() -> None:
        mine = [new_uuid4() for _ in range(2000)]
        with lock:
            ids.extend(mine)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == len(ids) == 8000
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids[:100])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_uuid4()  # the pool now holds bytes the parent will use next
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.write(write, new_uuid4().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child_id = os.read(read, 100).decode()
    os.close(read)
    assert child_id != new_uuid4()
