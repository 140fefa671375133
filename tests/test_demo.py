"""``make demo`` on a machine without Redis: the embedded redis-server path, end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"


def test_demo_with_embedded_redis() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDAI_OPERATOR_")}
    env["SANDAI_DEMO_EMBEDDED"] = "1"
    out = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "embedded redis-server on unix://" in out.stdout
    assert "499 succeeded, 1 failed" in out.stdout
    assert "response_ok=True" in out.stdout
