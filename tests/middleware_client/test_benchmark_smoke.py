"""``benchmarks/middleware_overhead.py`` keeps running (tiny counts; no figure is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_middleware_overhead_benchmark_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "middleware_overhead.py"), "--count", "10", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "no middleware" in proc.stdout
    assert "ratio (with / without):" in proc.stdout
