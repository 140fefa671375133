"""A real operator built with sandai-operator-sdk, for interop tests and fixture captures.

Run inside a virtual environment that has ``sandai-operator-sdk`` installed::

    SANDAI_OPERATOR_ENV=prod SANDAI_OPERATOR_CELERY_BROKER_URL=redis://127.0.0.1:6379/0 \
        python echo_operator.py NAME VERSION

Options: ``text`` is echoed back, ``fail`` makes the operator report an error envelope, ``sleep`` delays.
"""

import sys
import time
from typing import Iterable, List

from pydantic import BaseModel
from sandai.operator import BatchProcessor, OutputArtifact, TaskError, TaskInput, TaskOutput


class EchoOptions(BaseModel):
    text: str = ""
    fail: bool = False
    sleep: float = 0.0
    test: bool = False


class EchoResults(BaseModel):
    echo: str
    n_artifacts: int


def main() -> None:
    name, version = sys.argv[1], sys.argv[2]
    operator = BatchProcessor(name, version, ignore_nongil_check=True)
    operator.config["channel.type"] = "celery"

    @operator.on_batch(max_batch_size=16, max_concurrency=1, max_prefetch_size=64)
    def process(batch_inputs: List[TaskInput[EchoOptions]], config, context) -> Iterable[TaskOutput[EchoResults]]:
        """Echo the text option back; fail on request."""
        for task in batch_inputs:
            if task.options.sleep:
                time.sleep(task.options.sleep)
            if task.options.fail:
                yield TaskOutput(
                    task_id=task.task_id,
                    status="error",
                    error=TaskError(
                        error_type="EchoFailure",
                        error_message="asked to fail",
                        error_details={"text": task.options.text},
                    ),
                )
                continue
            yield TaskOutput(
                task_id=task.task_id,
                results=EchoResults(echo=task.options.text, n_artifacts=len(task.artifacts or [])),
                artifacts=[OutputArtifact(uri=a.uri, slot=a.slot) for a in (task.artifacts or [])],
            )

    operator.run()


if __name__ == "__main__":
    main()
