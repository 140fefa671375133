"""What ``mypy --strict`` must refuse (tests/test_typing.py reads the errors): each line marked ``E:``."""

from sandai.operator_client import create_client

client = create_client("echo", "v1", brokr_url="redis://")  # E: Unexpected keyword argument "brokr_url"
client.sync([], {}, priority="urgent")  # E: Argument "priority"
client.sync([], {}, timeout="5")  # E: Argument "timeout"
