"""The copyable example in examples/testing passes, run the way a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_examples_testing_passes() -> None:
    # A user's project runs pytest with its default (prepend) import mode; this
    # repository's own suite uses importlib mode, so say which one explicitly.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "examples/testing", "-q", "-p", "no:cacheprovider", "--import-mode=prepend"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout
