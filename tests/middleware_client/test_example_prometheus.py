"""``examples/metrics_prometheus/main.py`` runs end to end: gRPC calls, a Prometheus
scrape of its own exporter, and the RPC metrics in it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_prometheus_example() -> None:
    pytest.importorskip("opentelemetry.exporter.prometheus")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "metrics_prometheus" / "main.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "Hello, Ada!" in out and "failed as expected: (INVALID_ARGUMENT)" in out
    for side in ("server", "client"):
        assert f'rpc_{side}_duration_milliseconds_count{{' in out
        assert f"grpcasgi_{side}_active_calls{{" in out
    failed = [line for line in out.splitlines() if 'rpc_server_duration_milliseconds_count{' in line and 'rpc_grpc_status_code="3"' in line]
    assert len(failed) == 1 and failed[0].endswith(" 1.0")
