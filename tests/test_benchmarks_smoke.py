"""The benchmark harness keeps working: ``benchmarks/run.py --smoke`` end to end.

Runs every server and load generator once with tiny counts (h2load
measurements are skipped when h2load is not installed) and checks that each
produced a figure. Performance numbers are never asserted: they depend on the
machine and its load.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)
def test_benchmark_smoke_run(tmp_path: Path) -> None:
    output = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = output.read_text()
    assert "## Servers" in text and "## Clients" in text and "## Goals" in text
    assert "| grpcasgi (bundled) |" in text and "| grpclib |" in text
    raw = json.loads((tmp_path / "results.json").read_text())
    (servers,) = raw["servers"]
    for key in ("grpcasgi", "grpclib"):
        values = servers[key]
        assert isinstance(values["kib_per_conn"], float)
        assert isinstance(values["bidi"], float) and values["bidi"] > 0
    (clients,) = raw["clients"]
    assert clients["grpcasgi"]["unary_ops"] > 0
