"""Capture golden wire fixtures from the real peers (``make fixtures``).

``python capture.py all`` (or one step: ``python capture.py sdk-legacy``) builds four virtual environments
under ``.venvs/`` (Celery; the published seed client ``sandai-operator-client==0.4.6``; the operator SDK
``sandai-operator-sdk==0.6.2`` and ``0.4.0``) and runs this same file inside each of them to record what
the real packages put on the wire:

* ``celery_send_task.json``  what Celery's ``send_task`` LPUSHes onto Redis lists (json and msgpack,
  every kombu priority step);
* ``seed_client.json``       what the seed client LPUSHes for each task control and priority;
* ``seed_surface.json``      the seed's public names per module, with signatures and class members (the
  migration guide's differences are checked against it);
* ``sdk_results.json``       the result records a real SDK operator writes (success, error, desc,
  deadline exceeded, cancelled; json and msgpack result serializers; json and msgpack tasks);
* ``sdk_0_4_0_results.json`` the same from ``sandai-operator-sdk==0.4.0`` (json tasks only: it refuses
  msgpack), which stores every error as a Celery FAILURE;
* ``celery_results.json``    Celery result records: FAILURE with an exception dict, and json values with
  kombu's ``__type__`` wrappers.

Needs Redis on ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``). Every key it makes is unique and
deleted afterwards. Nothing here is imported by the library or the tests; they only read the JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PINS = {
    "celery": ["celery[redis,msgpack]==5.7.0", "kombu==5.7.0", "packaging"],
    "seed": ["sandai-operator-client==0.4.6", "packaging"],
    "sdk": ["sandai-operator-sdk==0.6.2", "packaging", "msgpack"],
    # the last release that stores errors as Celery FAILUREs and accepts only json tasks (needs libcap-dev
    # to build python-prctl)
    "sdk-legacy": ["sandai-operator-sdk==0.4.0", "packaging", "msgpack"],
}


def _write(name: str, data: object) -> None:
    (HERE / name).write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"wrote {name}")


def _redis():
    import redis

    return redis.Redis.from_url(REDIS_URL)


def _drain(r, prefix: bytes) -> dict:
    """Every list whose name starts with ``prefix``: name -> raw elements (oldest first)."""
    found = {}
    for key in r.scan_iter(match=prefix + b"*"):
        if r.type(key) == b"list":
            found[key.decode()] = [v.decode() for v in reversed(r.lrange(key, 0, -1))]
        r.delete(key)
    for key in r.scan_iter(match=b"_kombu.binding*" + prefix + b"*"):
        r.delete(key)
    return found


# --------------------------------------------------------------------------- Celery
def capture_celery() -> None:
    import celery
    import kombu
    from celery import Celery

    r = _redis()
    cases = []
    for serializer in ("json", "msgpack"):
        app = Celery("capture", broker=REDIS_URL, backend=REDIS_URL)
        app.conf.update(task_serializer=serializer, accept_content=["json", "msgpack"])
        for priority in (None, 0, 3, 6, 9):
            queue = f"normal.cap-{uuid.uuid4().hex[:8]}.v1"
            kwargs = {
                "meta": {"persistent-output": False},
                "artifacts": [{"uri": "file:///tmp/in.mp4", "slot": "video"}],
                "options": {"text": "héllo", "n": 3, "ratio": 0.5, "flag": True, "none": None},
                "deadline": 1795910717.0512176,
                "cancel_key": "ck-1",
            }
            options = {"queue": queue}
            if priority is not None:
                options["priority"] = priority
            result = app.send_task("sandai_operator.cap.v1.process_task", kwargs=kwargs, **options)
            lists = _drain(r, queue.encode())
            cases.append(
                {
                    "name": f"celery-{serializer}-priority-{priority}",
                    "serializer": serializer,
                    "priority": priority,
                    "queue": queue,
                    "task_id": result.id,
                    "kwargs": kwargs,
                    "lists": lists,
                }
            )
    _write(
        "celery_send_task.json",
        {"versions": {"celery": celery.__version__, "kombu": kombu.__version__}, "cases": cases},
    )

    # Result records as Celery's Redis backend stores them.
    records = []
    app = Celery("capture", broker=REDIS_URL, backend=REDIS_URL)
    app.conf.update(result_serializer="json", accept_content=["json", "msgpack"])
    import datetime
    import decimal

    def store(name, value, state, serializer="json"):
        app.conf.result_serializer = serializer
        backend = app.backend
        backend.serializer = serializer
        backend.content_type, backend.content_encoding, backend.encoder = __import__(
            "kombu.serialization", fromlist=["registry"]
        ).registry._encoders[serializer]
        task_id = str(uuid.uuid4())
        backend.store_result(task_id, value, state)
        key = f"celery-task-meta-{task_id}"
        raw = r.get(key)
        r.delete(key)
        entry = {"name": name, "serializer": serializer, "task_id": task_id, "state": state}
        if serializer == "json":
            entry["raw"] = raw.decode()
        else:
            entry["raw_hex"] = raw.hex()
        records.append(entry)

    store("failure-valueerror", ValueError("boom", 42), "FAILURE")
    store("failure-runtime-msgpack", RuntimeError("EchoFailure: asked to fail"), "FAILURE", "msgpack")
    store(
        "success-type-wrappers",
        {
            "when": datetime.datetime(2026, 11, 29, 1, 2, 3, 456789, tzinfo=datetime.timezone.utc),
            "day": datetime.date(2026, 11, 29),
            "price": decimal.Decimal("12.50"),
            "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "text_bytes": b"plain",
            "bin_bytes": b"\xff\x00\x01",
        },
        "SUCCESS",
    )
    store("success-msgpack", {"status": "success", "artifacts": [], "results": {"x": 1}}, "SUCCESS", "msgpack")
    store("revoked", None, "REVOKED")
    _write(
        "celery_results.json",
        {"versions": {"celery": celery.__version__, "kombu": kombu.__version__}, "records": records},
    )


# --------------------------------------------------------------------------- seed client
def capture_seed() -> None:
    from importlib.metadata import version

    from sandai.operator_client import create_client

    r = _redis()
    cases = []
    name = f"cap-{uuid.uuid4().hex[:8]}"
    client = create_client(name, "v1", broker_url=REDIS_URL, auto_forget_result=False)
    variants = [
        ("default", {}),
        ("timeout", {"timeout": 60}),
        ("cancel-key", {"cancel_key": "ck-seed"}),
        ("persistent-output", {"persistent_output": True}),
        ("all-controls", {"timeout": 60, "cancel_key": "ck-all", "persistent_output": True}),
    ] + [(f"priority-{p}", {"priority": p}) for p in ("high", "normal", "low", "very_low")]
    for label, controls in variants:
        sent_at = time.time()
        artifacts = [{"uri": "file:///tmp/in.mp4", "slot": "video"}]
        options = {"text": "wire", "n": 1}
        result = client.async_call(artifacts, options, **controls)
        cases.append(
            {
                "name": f"seed-{label}",
                "controls": controls,
                "input_artifacts": artifacts,
                "options": options,
                "sent_at": sent_at,
                "default_timeout": 28800,
                "task_id": result.id,
                "lists": _drain(r, f"{controls.get('priority', 'normal')}.{name}".encode()),
            }
        )
    result = client._submit_payload({"task_type": "desc"}, priority="high")
    cases.append({"name": "seed-desc", "task_id": result.id, "lists": _drain(r, f"high.{name}".encode())})
    _write(
        "seed_client.json",
        {
            "versions": {
                "sandai-operator-client": version("sandai-operator-client"),
                "celery": version("celery"),
                "kombu": version("kombu"),
            },
            "operator": name,
            "cases": cases,
        },
    )


# --------------------------------------------------------------------------- the seed's public surface
SEED_MODULES = (
    "sandai.operator_client",
    "sandai.operator_client.client",
    "sandai.operator_client.exceptions",
    "sandai.operator_client.config",
    "sandai.operator_client.types",
    "sandai.operator_client.protocol",
)


def _signature(obj) -> str:
    import inspect

    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""


def _describe(obj) -> dict:
    import inspect

    if inspect.isclass(obj):
        members = {}
        for name, member in inspect.getmembers(obj):
            if name.startswith("_") and name not in ("__init__", "__enter__", "__exit__", "__aenter__", "__aexit__"):
                continue
            if isinstance(inspect.getattr_static(obj, name), property):
                members[name] = {"kind": "property"}
            elif callable(member):
                kind = "async" if inspect.iscoroutinefunction(member) else "method"
                members[name] = {"kind": kind, "signature": _signature(member)}
            else:
                members[name] = {"kind": "attribute"}
        return {"kind": "class", "bases": [b.__name__ for b in obj.__mro__[1:]], "members": members}
    if callable(obj):
        return {"kind": "async" if inspect.iscoroutinefunction(obj) else "function", "signature": _signature(obj)}
    return {"kind": "value", "type": type(obj).__name__}


def capture_seed_surface() -> None:
    """Every public name of the seed's modules (what they define or re-export for callers: not the modules
    and typing helpers they import for themselves), with signatures and class members."""
    import importlib
    import inspect
    import types as pytypes
    import typing
    from importlib.metadata import version

    modules = {}
    for module_name in SEED_MODULES:
        module = importlib.import_module(module_name)
        exported = getattr(module, "__all__", None)
        names = {}
        for name in exported if exported is not None else dir(module):
            if name.startswith("_"):
                continue
            obj = getattr(module, name)
            if isinstance(obj, pytypes.ModuleType) or name == "TYPE_CHECKING" or getattr(typing, name, None) is obj:
                continue  # modules and typing's own names (Dict, Optional) it imported
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and not obj.__module__.startswith("sandai."):
                continue  # imported for the module's own use (dataclass, AsyncResult)
            if exported is None and not (inspect.isclass(obj) or inspect.isfunction(obj)) and name.islower():
                continue  # a lower-case value (a logger) is the module's own, not an export
            names[name] = _describe(obj)
        modules[module_name] = names
    from sandai.operator_client import AsyncOperatorClient, OperatorClient

    instance_attributes = {}
    for cls in (OperatorClient, AsyncOperatorClient):  # what __init__ sets: constructing connects nowhere
        client = cls("surface", "v1", broker_url="redis://127.0.0.1:1/0")
        instance_attributes[cls.__name__] = sorted(n for n in vars(client) if not n.startswith("_"))
    _write(
        "seed_surface.json",
        {
            "versions": {"sandai-operator-client": version("sandai-operator-client")},
            "modules": modules,
            "instance_attributes": instance_attributes,
        },
    )


# --------------------------------------------------------------------------- SDK operator results
def capture_sdk(output: str = "sdk_results.json", task_serializers: tuple = ("msgpack", "json")) -> None:
    from importlib.metadata import version

    from celery import Celery

    r = _redis()
    records = []
    artifact = HERE / "README.md"
    for result_serializer in ("json", "msgpack"):
        name = f"cap-{uuid.uuid4().hex[:8]}"
        env = dict(
            os.environ,
            SANDAI_OPERATOR_ENV="prod",
            SANDAI_OPERATOR_CELERY_BROKER_URL=REDIS_URL,
            SANDAI_OPERATOR_CELERY_RESULT_SERIALIZER=result_serializer,
            SANDAI_OPERATOR_TEMP_DIR=str(VENVS / "tmp"),
        )
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "echo_operator.py"), name, "v1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for task_serializer in task_serializers:
                app = Celery("capture", broker=REDIS_URL)
                app.conf.update(task_serializer=task_serializer, accept_content=["json", "msgpack"])
                r.set("ck-set-" + name, "1", ex=300)
                cases = [
                    ("success", {"options": {"text": "hello"}, "artifacts": []}),
                    (
                        "success-artifact",
                        {"options": {"text": "a"}, "artifacts": [{"uri": f"file://{artifact}", "slot": "doc"}]},
                    ),
                    ("error", {"options": {"text": "x", "fail": True}, "artifacts": []}),
                    ("deadline-exceeded", {"options": {}, "artifacts": [], "deadline": time.time() - 30}),
                    ("cancelled", {"options": {}, "artifacts": [], "cancel_key": "ck-set-" + name}),
                    ("desc", {"task_type": "desc"}),
                ]
                for label, payload in cases:
                    if "task_type" not in payload:
                        payload = {"meta": {"persistent-output": False}, **payload}
                    task_id = str(uuid.uuid4())
                    app.send_task(
                        f"sandai_operator.{name}.v1.process_task",
                        kwargs=payload,
                        queue=f"normal.{name}.v1",
                        task_id=task_id,
                    )
                    key = f"celery-task-meta-{task_id}"
                    deadline = time.time() + 60
                    while (raw := r.get(key)) is None:
                        if time.time() > deadline:
                            raise SystemExit(f"operator wrote no result for {label}")
                        time.sleep(0.05)
                    r.delete(key)
                    entry = {
                        "name": f"sdk-{label}-task-{task_serializer}-result-{result_serializer}",
                        "case": label,
                        "task_serializer": task_serializer,
                        "result_serializer": result_serializer,
                        "task_id": task_id,
                        "payload": payload,
                    }
                    if result_serializer == "json":
                        entry["raw"] = raw.decode()
                    else:
                        entry["raw_hex"] = raw.hex()
                    records.append(entry)
                r.delete("ck-set-" + name)
        finally:
            proc.terminate()
            proc.wait(10)
            for key in r.scan_iter(match=f"*{name}*"):
                r.delete(key)
    _write(
        output,
        {
            "versions": {"sandai-operator-sdk": version("sandai-operator-sdk"), "celery": version("celery")},
            "records": records,
        },
    )


STEP_ENVS = {"celery": "celery", "seed": "seed", "seed-surface": "seed", "sdk": "sdk", "sdk-legacy": "sdk-legacy"}
"""Each capture step and the environment it runs in."""


def _venv(name: str) -> Path:
    path = VENVS / name
    python = path / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PINS[name]], check=True)
    return python


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what == "all":
        for step, env_name in STEP_ENVS.items():
            subprocess.run([str(_venv(env_name)), __file__, step], check=True)
        return
    if Path(sys.prefix).resolve() != (VENVS / STEP_ENVS[what]).resolve():
        subprocess.run([str(_venv(STEP_ENVS[what])), __file__, what], check=True)  # in its own environment
        return
    steps = {
        "celery": capture_celery,
        "seed": capture_seed,
        "seed-surface": capture_seed_surface,
        "sdk": capture_sdk,
        "sdk-legacy": lambda: capture_sdk("sdk_0_4_0_results.json", ("json",)),
    }
    steps[what]()


if __name__ == "__main__":
    main()
