"""The fast operator every benchmark client talks to: the FakeOperator echoing, in its own process."""

import sys

import anyio

from sandai_operator_client.testing import FakeOperator


async def main() -> None:
    backend = sys.argv[3] if len(sys.argv) > 3 else sys.argv[2]
    await FakeOperator(sys.argv[1], "v1", broker_url=sys.argv[2], result_backend=backend, track_unacked=False).run()


if __name__ == "__main__":
    try:
        anyio.run(main)
    except KeyboardInterrupt:
        pass
