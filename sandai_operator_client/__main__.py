"""``python -m sandai_operator_client``: the ``sandai-operator`` command line."""

import sys

from .cli import main

sys.exit(main())
