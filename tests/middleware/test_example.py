"""examples/middleware runs end to end: server subprocess, client, every expectation met."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parents[2] / "examples" / "middleware" / "run.py"


def test_middleware_example_runs() -> None:
    result = subprocess.run([sys.executable, str(RUN)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "GetItem without a token                      -> UNAUTHENTICATED: Missing credentials" in out
    assert "PutItem as reader                            -> PERMISSION_DENIED" in out
    assert "item.quantity: must not be negative" in out
    assert "GetItem of an unknown SKU                    -> NOT_FOUND: Not found" in out
    assert "-> DEADLINE_EXCEEDED" in out and "RESOURCE_EXHAUSTED (retry after" in out
    # the server's JSON access log went to stderr
    assert '"logger": "inventory.access"' in result.stderr and '"principal": "admin"' in result.stderr


def test_third_party_package_example_passes_its_own_tests() -> None:
    """The package layout shown in docs/middleware.md works as written."""
    package = RUN.parent / "grpcasgi-request-id"
    env = {**os.environ, "PYTHONPATH": str(package / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=package,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
