"""The blocking client under gevent's monkey-patching, as in Celery's gevent pool: many greenlets call at
once, the hub keeps running during a call, a greenlet's timeout cancels its call, batches work. Prints
one JSON line of what it saw."""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402
from typing import Any, Dict, List  # noqa: E402

import gevent  # noqa: E402

from sandai_operator_client import TaskTimeoutError, create_client  # noqa: E402

name, url, concurrent = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen: Dict[str, Any] = {}
with create_client(name, "v1", broker_url=url, timeout=30) as client:
    answers: List[str] = []
    errors: List[str] = []

    def call(i: int) -> None:
        try:
            answers.append(client.sync([], {"text": str(i)})[1]["echo"])
        except Exception as exc:
            errors.append(repr(exc))

    gevent.joinall([gevent.spawn(call, i) for i in range(concurrent)], timeout=60)
    seen["answers"] = sorted(answers, key=int)
    seen["errors"] = errors[:3]

    # while one greenlet waits for a slow task, another one runs
    ran_during_call: List[bool] = []
    slow = gevent.spawn(client.sync, [], {"text": "slow", "sleep": 0.5})
    gevent.sleep(0.1)
    ran_during_call.append(not slow.ready())
    slow.join(30)
    seen["ran_during_call"] = ran_during_call == [True] and slow.successful()

    # a gevent timeout cancels the call; the client keeps working
    try:
        with gevent.Timeout(0.2):
            client.sync([], {"text": "cut", "sleep": 5})
        seen["cut"] = "not cut"
    except gevent.Timeout:
        seen["cut"] = "gevent.Timeout"
    try:
        client.sync([], {"sleep": 5}, timeout=1)
    except TaskTimeoutError:
        seen["task_timeout"] = True
    seen["after"] = client.sync([], {"text": "after"})[1]["echo"]
    batch = client.batch_sync_detailed([([], {"text": str(i)}) for i in range(50)], timeout=30)
    seen["batch"] = sum(1 for item in batch if item.success)
    seen["iter"] = sum(1 for _ in client.batch_iter([([], {"text": str(i)}) for i in range(20)], timeout=30))
print(json.dumps(seen), flush=True)
